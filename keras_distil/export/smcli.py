"""``saved_model_cli`` with tensorflow-text's ops registered.

A SavedModel with the ``serve_text`` signature holds tensorflow-text ops in its graph, and
``saved_model_cli run`` imports the whole graph, so the stock command fails with "Op type not
registered 'NormalizeUTF8'" even for ``serving_default``. This runs the same tool after
``import tensorflow_text``::

    python -m keras_distil.export.smcli run --dir saved_models/student/1 --tag_set serve \\
        --signature_def serving_default --input_exprs 'token_ids=[[101,7592,102]];padding_mask=[[1,1,1]]'
"""

import sys

import tensorflow_text  # noqa: F401 - registers the ops
from tensorflow.python.tools import saved_model_cli

if __name__ == "__main__":
    sys.argv[0] = "saved_model_cli"
    sys.exit(saved_model_cli.main())
