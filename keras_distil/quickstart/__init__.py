"""``keras-distil quickstart``: an offline corpus of real English prose (:mod:`.corpus`), a WordPiece
vocabulary learned from it (:mod:`.vocab`), and the cached stages that train, evaluate, export and
report on top of them (:mod:`.run`, :mod:`.stages`); its command line is :mod:`keras_distil.cli.quickstart`."""
