"""Read the folds a setup has finished: Dice per label and the trainer's run record.

Dice comes from nnU-Net's own ``fold_k/validation/summary.json`` (written by
``nnunetv2.evaluation.evaluate_predictions.compute_metrics_on_folder``): ``mean`` maps each
foreground label, as the string of its integer value (or of its region tuple), to that label's
metrics averaged over the fold's validation cases. Label names come from ``dataset.json``
``labels`` (name -> value). The number of trainable parameters, the backbone source and the
training budget and the learning rate a run trained at (``initial_lr``, and
``learning_rate_source``: ``budget NAME`` or ``VOX2VEC_LEARNING_RATE``; records written before
the trainers recorded it have neither: "unrecorded") come from ``vox2vec_run.json``, written by
our trainers, so a row of the table can never show a random-init run as a pre-trained one
(paper Fig. 2, "random-FPN").

Nothing here raises on a missing or broken fold: each one becomes a :class:`Problem` that says
which setup, which fold and which file.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key

from vox2vec_nnunet.benchmark.layout import RUN_RECORD, SUMMARY, ResultsLayout
from vox2vec_nnunet.training.setups import PRETRAINED, RANDOM_INIT, Setup


@dataclass(frozen=True)
class Problem:
    """Something missing or inconsistent in the results, said in one line."""

    setup: str
    fold: int | None
    message: str
    path: Path | None = None

    def __str__(self) -> str:
        where = self.setup if self.fold is None else f"{self.setup}, fold {self.fold}"
        return f"{where}: {self.message}" + (f" ({self.path})" if self.path is not None else "")


@dataclass(frozen=True)
class RunRecord:
    """The contents of ``vox2vec_run.json`` (written by the vox2vec trainers)."""

    trainer: str
    backbone_source: str
    pretrained_weights: str | None
    trainable_parameters: int
    total_parameters: int
    num_iterations: int
    batch_size: int
    initial_lr: float | None = None  # None: a record from before the trainers wrote it
    learning_rate_source: str | None = None

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """Parse and check one run record; ``ValueError`` names the file and the bad field."""
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read run record {path}: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"run record {path} is not a JSON object")
        for key in ("trainable_parameters", "total_parameters", "num_iterations", "batch_size"):
            value = data.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"run record {path}: '{key}' must be a non-negative integer, got {value!r}")
        if not isinstance(data.get("trainer"), str):
            raise ValueError(f"run record {path}: 'trainer' must be a string, got {data.get('trainer')!r}")
        if data.get("backbone_source") not in (PRETRAINED, RANDOM_INIT):
            raise ValueError(f"run record {path}: 'backbone_source' must be '{PRETRAINED}' or "
                             f"'{RANDOM_INIT}', got {data.get('backbone_source')!r}")
        weights = data.get("pretrained_weights")
        if weights is not None and not isinstance(weights, str):
            raise ValueError(f"run record {path}: 'pretrained_weights' must be a string or null")
        lr = data.get("initial_lr")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))
                               or not 0 < lr < math.inf):
            raise ValueError(f"run record {path}: 'initial_lr' must be a positive number, got {lr!r}")
        source = data.get("learning_rate_source")
        if source is not None and not isinstance(source, str):
            raise ValueError(f"run record {path}: 'learning_rate_source' must be a string, got {source!r}")
        return cls(trainer=data["trainer"], backbone_source=data["backbone_source"],
                   pretrained_weights=weights,
                   trainable_parameters=data["trainable_parameters"],
                   total_parameters=data["total_parameters"],
                   num_iterations=data["num_iterations"], batch_size=data["batch_size"],
                   initial_lr=None if lr is None else float(lr), learning_rate_source=source)


@dataclass(frozen=True)
class FoldResult:
    """One finished fold: Dice per label name (validation cases of the fold) and its run record;
    for a fold trained several times (:mod:`.repeats`) the mean over its runs, with each run's
    mean Dice over labels in ``run_mean_dice`` (empty: a single run)."""

    fold: int
    dice: dict[str, float]
    run: RunRecord | None
    run_mean_dice: tuple[float, ...] = ()

    @property
    def num_runs(self) -> int:
        return max(1, len(self.run_mean_dice))


def foreground_labels(dataset_json: dict, source: Path | str) -> dict[str, str]:
    """Label name -> its key in ``summary.json`` ``mean``, in ``dataset.json`` order.

    Background (value 0) and nnU-Net's ``ignore`` label are left out, as nnU-Net's validation
    does. ``source`` only names the file in error messages.
    """
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{source}: 'labels' must be a non-empty mapping of name -> value")
    keys: dict[str, str] = {}
    for name, value in labels.items():
        if name == "ignore":
            continue
        if isinstance(value, list):
            if set(value) == {0}:
                continue
            keys[name] = label_or_region_to_key(tuple(int(v) for v in value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if value != 0:
                keys[name] = label_or_region_to_key(value)
        else:
            raise ValueError(f"{source}: label {name!r} has value {value!r}, expected an integer "
                             f"or a list of integers")
    if not keys:
        raise ValueError(f"{source}: 'labels' has no foreground label")
    return keys


def read_fold_dice(summary_path: Path, labels: dict[str, str]) -> dict[str, float]:
    """Dice per label name from one ``summary.json``; ``ValueError`` names the file and label.

    A label whose Dice is NaN (nnU-Net's value when a label is absent from every validation case
    and never predicted) is returned as NaN; :mod:`.table` leaves it out of that label's average.
    """
    try:
        summary = json.loads(summary_path.read_text())
        means = summary["mean"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read per-label Dice from {summary_path}: {e!r}") from e
    dice: dict[str, float] = {}
    for name, key in labels.items():
        try:
            dice[name] = float(means[key]["Dice"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{summary_path} has no Dice for label {name!r} (key {key!r} in "
                             f"'mean'); its labels are {sorted(means)}") from e
    return dice


def read_foreground_dice(summary_path: Path) -> float:
    """nnU-Net's ``foreground_mean`` Dice of one ``summary.json`` (the mean over foreground labels
    of each label's mean over the validation cases); ``ValueError`` names the file."""
    try:
        return float(json.loads(summary_path.read_text())["foreground_mean"]["Dice"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot read foreground_mean Dice from {summary_path}: {e!r}") from e


def collect_setup(layout: ResultsLayout, setup: Setup, folds: Sequence[int],
                  labels: dict[str, str]) -> tuple[list[FoldResult], list[Problem]]:
    """The finished folds of ``setup`` among ``folds``, and the problems met on the way.

    A setup without a results folder gives one Problem, not one per fold. A fold counts when
    its ``summary.json`` holds Dice for every label. A missing or broken
    ``vox2vec_run.json`` is reported and leaves the fold's run record empty (its Dice still
    counts); a record that names another trainer, or a backbone source the setup cannot have,
    is reported as well.
    """
    results: list[FoldResult] = []
    problems: list[Problem] = []
    trainer_dir = layout.trainer_dir(setup.trainer)
    if not trainer_dir.is_dir():
        return results, [Problem(setup.name, None, "never trained (no results folder)", trainer_dir)]
    for fold in folds:
        fold_dir = layout.fold_dir(setup.trainer, fold)
        if not fold_dir.is_dir():
            problems.append(Problem(setup.name, fold, "fold not trained (folder missing)", fold_dir))
            continue
        summary_path = fold_dir / SUMMARY
        if not summary_path.is_file():
            problems.append(Problem(setup.name, fold, f"no validation result, missing {SUMMARY}",
                                    summary_path))
            continue
        try:
            dice = read_fold_dice(summary_path, labels)
        except ValueError as e:
            problems.append(Problem(setup.name, fold, str(e)))
            continue
        run = None
        record_path = fold_dir / RUN_RECORD
        if not record_path.is_file():
            problems.append(Problem(setup.name, fold, f"missing {RUN_RECORD}: trainable parameters, "
                                    f"backbone source and budget unknown", record_path))
        else:
            try:
                run = RunRecord.read(record_path)
            except ValueError as e:
                problems.append(Problem(setup.name, fold, str(e)))
        if run is not None and run.trainer != setup.trainer:
            problems.append(Problem(setup.name, fold, f"run record names trainer {run.trainer!r}, "
                                    f"expected {setup.trainer!r}", record_path))
        if run is not None and run.backbone_source != setup.expected_backbone_source:
            problems.append(Problem(setup.name, fold, f"backbone source is {run.backbone_source!r}, "
                                    f"but setup {setup.name!r} expects "
                                    f"{setup.expected_backbone_source!r}", record_path))
        results.append(FoldResult(fold, dice, run))
    return results, problems
