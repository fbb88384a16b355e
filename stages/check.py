"""Stage check: validate all of ``params.yaml`` before any other stage runs.

Its DVC dependencies are every section but ``runtime`` (which cannot change results, so it must
not change ``dvc.lock``; every stage still validates it when it runs).

Every other stage depends on its output, so ``dvc repro`` stops here, with the one-line error, on a
params file that is invalid in any section, before DVC removes any stage's last good outputs. It
also catches what no other stage would read: a setting in the block of an optimizer that
``train.optimizer`` does not choose (ignored, hence an error; see :mod:`evomlp.params`). Its
output never changes (a fixed line), so a rerun of this stage reruns nothing after it.
"""

from __future__ import annotations

from pathlib import Path

from stages.common import PARAMS, run_stage

from evomlp.artifacts import atomic_path
from evomlp.params import load_params

CHECKED = Path("data/params-checked")


def main() -> None:
    load_params(PARAMS)
    with atomic_path(CHECKED) as temporary:
        temporary.write_text("params.yaml: valid\n")


if __name__ == "__main__":
    run_stage(main)
