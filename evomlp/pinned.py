"""``python -m evomlp.pinned [COMMAND ...]``: run a command with BLAS and numpy pinned as the stages are.

Without a command it prints the kernels this Python computes with (:func:`evomlp.numerics.describe`).
With one, it replaces itself by COMMAND in the pinned environment (:mod:`evomlp.numerics`), which
is how processes that do not import evomlp first get the same bits: a ``dask worker`` on another
machine, or a benchmark that imports numpy before evomlp.
"""

from __future__ import annotations

import os
import sys

from evomlp import numerics

USAGE = """usage: python -m evomlp.pinned [COMMAND ...]

Without a command: print the kernels (BLAS, numpy SIMD) this Python computes with.
With one: run COMMAND with them pinned as evomlp's stages are, e.g.
  python -m evomlp.pinned dask worker tcp://scheduler:8786"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv:
        try:
            os.execvpe(argv[0], argv, numerics.pinned_environment())
        except OSError as error:
            print(f"error: {argv[0]}: {error.strerror}", file=sys.stderr)
            return 127
    import numpy  # noqa: F401  (loads OpenBLAS, so its kernels show)

    print(numerics.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
