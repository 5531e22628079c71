"""The pieces of ``keras-distil quickstart`` that need no trained model: an offline corpus of real
English prose (:mod:`.corpus`) and a WordPiece vocabulary learned from it (:mod:`.vocab`)."""
