"""``python -m keras_distil_cli COMMAND ...``: the same as the ``keras-distil`` console script."""

import sys

from keras_distil_cli import main

sys.exit(main())
