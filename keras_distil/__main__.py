"""``python -m keras_distil COMMAND ...`` (the same as the ``keras-distil`` console script)."""

import sys

from keras_distil.cli import main

sys.exit(main())
