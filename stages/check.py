"""Stage check: validate all of ``params.yaml`` and ``runtime.yaml`` before any other stage runs.

Its DVC dependencies are ``params.yaml`` as a file, ``data/raw`` and the code: everything that can
make a later stage rerun, so this stage always runs first (``runtime.yaml`` is no dependency of any
stage: it cannot change results, so it must not change ``dvc.lock``; it is checked here all the same).

Every other stage depends on its output, so ``dvc repro`` stops here, with the one-line error, on a
settings file that is invalid in any section, before DVC removes any stage's last good outputs. It
also catches what no other stage would read: a setting in the block of an optimizer that
``train.optimizer`` does not choose (ignored, hence an error; see :mod:`evomlp.params`). Its
output never changes (a fixed line), so a rerun of this stage reruns nothing after it.
"""

from __future__ import annotations

from pathlib import Path

from stages.common import PARAMS, run_stage

from evomlp.artifacts import Outputs, atomic_path
from evomlp.params import load_params

CHECKED = Path("data/params-checked")


def main() -> None:
    load_params(PARAMS)
    with Outputs(CHECKED).written(), atomic_path(CHECKED) as temporary:
        temporary.write_text("params.yaml: valid\n")


if __name__ == "__main__":
    run_stage(main)
