"""``python -m keras_distil.cli COMMAND ...`` (the same as ``python -m keras_distil`` and ``keras-distil``)."""

import sys

from keras_distil.cli import main

sys.exit(main())
