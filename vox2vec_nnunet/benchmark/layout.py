"""Where nnU-Net keeps a setup's folds, and which files say how far a fold got.

nnU-Net writes ``$nnUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}/fold_{k}/``
with ``checkpoint_latest.pth`` during training, ``checkpoint_final.pth`` when training is done and
``validation/summary.json`` after the final validation (nnU-Net 2.8's ``nnUNetTrainer``).
Our trainers add ``vox2vec_run.json`` (backbone source, trainable parameters, budget).
"""
from __future__ import annotations

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
