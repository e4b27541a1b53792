"""Where nnU-Net keeps a setup's folds, and which files say how far a fold got.

nnU-Net writes ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}/fold_{k}/``
with ``checkpoint_latest.pth`` during training, ``checkpoint_final.pth`` when training is done
(``nnUNetTrainer.on_train_end``) and ``validation/summary.json`` after the final validation
(``perform_actual_validation``). Our trainers add ``vox2vec_run.json`` (backbone source, trainable
parameters, budget, learning rate). nnU-Net's ``training_log_*.txt`` says how long each epoch took.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

CHECKPOINT_FINAL = "checkpoint_final.pth"
CHECKPOINT_LATEST = "checkpoint_latest.pth"
SUMMARY = Path("validation") / "summary.json"
RUN_RECORD = "vox2vec_run.json"


@dataclass(frozen=True)
class ResultsLayout:
    """The results folder of one dataset, for one plans identifier and configuration."""

    dataset_results_dir: Path  # $nnUNet_results/DatasetXXX_Name
    plans: str
    configuration: str

    def trainer_dir(self, trainer: str) -> Path:
        return self.dataset_results_dir / convert_trainer_plans_config_to_identifier(
            trainer, self.plans, self.configuration)

    def fold_dir(self, trainer: str, fold: int) -> Path:
        return self.trainer_dir(trainer) / f"fold_{fold}"


_EPOCH_TIME = re.compile(r"Epoch time: ([0-9.]+) s")


def logged_training_seconds(fold_dir: Path) -> float | None:
    """The training time of the fold in ``fold_dir``: the sum of the ``Epoch time: X s`` lines of
    its ``training_log_*.txt`` files (nnU-Net's; validation not included); None if there are none."""
    times = [float(m.group(1)) for log in sorted(fold_dir.glob("training_log_*.txt"))
             for m in _EPOCH_TIME.finditer(log.read_text(errors="replace"))]
    return sum(times) if times else None
