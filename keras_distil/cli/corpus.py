"""An English corpus gathered offline from what every machine has, for ``keras-distil quickstart``.

``python -m keras_distil.cli.corpus OUT_DIR [--max-documents N] [--sources stdlib man doc]``: the thin CLI
over :func:`keras_distil.quickstart.corpus.gather_corpus` (the rules: :mod:`keras_distil.quickstart.corpus`).
It is not a ``keras-distil`` command; ``keras-distil quickstart`` builds the corpus as its first stage.
"""

from __future__ import annotations

import argparse
import json
import sys

from keras_distil.cli import setup_logging
from keras_distil.quickstart.corpus import SOURCES, CorpusSettings, gather_corpus


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.cli.corpus OUT_DIR [--max-documents N] [--sources stdlib man doc]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--max-documents", type=int, default=None, help="per source")
    parser.add_argument("--held-out", type=float, default=0.02)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    setup_logging("INFO", quiet_absl=False)
    manifest = gather_corpus(args.out_dir, CorpusSettings(sources=tuple(args.sources), held_out=args.held_out,
                                                          max_documents=args.max_documents), force=args.force)
    json.dump({k: manifest[k] for k in ("sources", "train", "heldout", "seconds")}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
