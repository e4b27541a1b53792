"""How long to pre-train: probe Dice against pre-training iterations, and its spread over seeds.

The paper pre-trains for 100,000 iterations (Sect. 4.1) and does not say how the probes improve
on the way. A user with limited GPU time wants to know when pre-training stops paying, so the
benchmark takes several checkpoints of pre-training runs — the snapshots a
``snapshot_every`` variant keeps (``fold_all/snapshots/checkpoint_iter_*.pth``) or any
``checkpoint_*.pth`` of ``Vox2VecPretrainTrainer`` — and trains each setup that starts from
pre-trained weights once per checkpoint. Iteration count and seed come from the checkpoint's
``vox2vec`` record, never from its file name.

nnU-Net's output folder depends only on trainer, plans and configuration, so every checkpoint
gets a results root of its own, ``$nnUNet_results/DatasetXXX/vox2vec_pretraining_curve/
{pre-training trainer}__seed{S}__iter{I}``, which ``nnUNetv2_train`` is given as its
``nnUNet_results``. The setups without weights are trained once, in the regular results folder;
the random-FPN probes are the curve's 0-iteration reference (a frozen FPN that was never
pre-trained, paper Fig. 2 "random-FPN"), drawn with hollow markers.

Several seeds of the same pre-training at the same iteration (e.g. ``vox2vec_nnunet_demo
--pretrain_seeds 0 1 2``) give the spread over seeds: per seed the mean over labels per fold
and then over folds, then mean ± sample std (``ddof=1``) over seeds.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vox2vec_nnunet.benchmark.collect import Problem
from vox2vec_nnunet.benchmark.statistics import MeanStd, mean_std
from vox2vec_nnunet.benchmark.table import (_LR_COLUMNS, Row, _csv_int, _csv_learning_rate, _csv_number, _markdown,
                                            _notes)
from vox2vec_nnunet.training.pretraining import SNAPSHOT_FOLDER
from vox2vec_nnunet.training.variants import unseeded_name

CURVE_SUBDIR = "vox2vec_pretraining_curve"
"""Folder of ``$nnUNet_results/DatasetXXX`` that holds one results root per checkpoint."""


@dataclass(frozen=True, order=True)
class PretrainingCheckpoint:
    """A checkpoint of a vox2vec pre-training run, as its ``vox2vec`` record describes it."""

    trainer: str
    seed: int
    iteration: int
    path: Path

    @property
    def run(self) -> str:
        """The pre-training run without its seed: the trainer name without ``_Seed{S}``."""
        return unseeded_name(self.trainer)

    @property
    def folder_name(self) -> str:
        return f"{self.trainer}__seed{self.seed}__iter{self.iteration:07d}"

    def describe(self) -> str:
        return f"seed {self.seed}, {self.iteration:,} pre-training iterations"


def read_checkpoint(path: Path) -> PretrainingCheckpoint:
    """Trainer, seed and iteration of one checkpoint; ``ValueError`` names the file and what is
    missing. Memory-mapped: only the small record is read, not the tensors."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    record = checkpoint.get("vox2vec") if isinstance(checkpoint, dict) else None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), int) for k in ("seed", "iteration")):
        raise ValueError(f"{path}: no 'vox2vec' record with seed and iteration; the pre-training curve needs "
                         f"checkpoints or snapshots written by Vox2VecPretrainTrainer")
    trainer = checkpoint.get("trainer_name")
    if not isinstance(trainer, str):
        raise ValueError(f"{path}: no 'trainer_name' (the pre-training trainer is unknown)")
    return PretrainingCheckpoint(trainer, record["seed"], record["iteration"], path.resolve())


def find_checkpoints(paths: Sequence[Path]) -> tuple[list[PretrainingCheckpoint], list[str]]:
    """The checkpoints named by ``paths`` — files, ``snapshots`` folders, or pre-training
    ``fold_all`` folders (their snapshots) — sorted by run, seed and iteration, and a note for
    each duplicate (the same run, seed and iteration twice: the first is kept). ``ValueError``
    for a path that names no checkpoint."""
    files: list[Path] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            folder = path / SNAPSHOT_FOLDER if (path / SNAPSHOT_FOLDER).is_dir() else path
            found = sorted(folder.glob("checkpoint_iter_*.pth"))
            if not found:
                raise ValueError(f"{path}: no snapshots (checkpoint_iter_*.pth) in {folder}")
            files += found
        else:
            raise ValueError(f"{path}: no such file or folder")
    checkpoints: dict[tuple[str, int, int], PretrainingCheckpoint] = {}
    notes = []
    for file in files:
        checkpoint = read_checkpoint(file)
        key = (checkpoint.trainer, checkpoint.seed, checkpoint.iteration)
        if key in checkpoints:
            notes.append(f"{file} is {checkpoint.trainer}, {checkpoint.describe()} again; "
                         f"{checkpoints[key].path} is used")
            continue
        checkpoints[key] = checkpoint
    return sorted(checkpoints.values()), notes


def checkpoint_results_root(dataset_results_dir: Path, checkpoint: PretrainingCheckpoint) -> Path:
    """The ``nnUNet_results`` of the folds trained from ``checkpoint``."""
    return dataset_results_dir / CURVE_SUBDIR / checkpoint.folder_name


@dataclass(frozen=True)
class CurvePoint:
    """One setup trained from one checkpoint (``checkpoint`` None: a random-FPN baseline, the
    0-iteration reference)."""

    checkpoint: PretrainingCheckpoint | None
    row: Row

    @property
    def iteration(self) -> int:
        return 0 if self.checkpoint is None else self.checkpoint.iteration


@dataclass(frozen=True)
class SeedSpread:
    """Mean Dice over labels of one setup, pre-training run and iteration, for each seed."""

    setup_label: str
    run: str
    iteration: int
    per_seed: dict[int, MeanStd]  # seed -> mean ± std over folds

    @property
    def over_seeds(self) -> MeanStd:
        return mean_std([stats.mean for stats in self.per_seed.values()])


def seed_spreads(points: Sequence[CurvePoint]) -> list[SeedSpread]:
    """The spread over seeds for every setup, run and iteration that has two or more seeds."""
    groups: dict[tuple[str, str, int], dict[int, MeanStd]] = {}
    for p in points:
        if p.checkpoint is not None and p.row.mean_dice.n > 0:
            key = (p.row.setup.label, p.checkpoint.run, p.checkpoint.iteration)
            groups.setdefault(key, {})[p.checkpoint.seed] = p.row.mean_dice
    return [SeedSpread(label, run, iteration, dict(sorted(per_seed.items())))
            for (label, run, iteration), per_seed in groups.items() if len(per_seed) > 1]


def curve_markdown(points: Sequence[CurvePoint], label_names: Sequence[str],
                   problems: Sequence[Problem] = ()) -> str:
    """One row per setup and checkpoint (the random-FPN baselines at 0 iterations), then the
    spread over seeds where there are several, then the notes."""
    header = ["Setup", "Pre-training", "Seed", "Iterations", "LR", "Folds", *label_names, "Mean"]
    body = []
    for p in points:
        run, seed = ("none (random FPN)", "—") if p.checkpoint is None else (p.checkpoint.run,
                                                                            str(p.checkpoint.seed))
        body.append([p.row.setup.label, run, seed, f"{p.iteration:,}", p.row.learning_rate(), str(len(p.row.folds)),
                     *(p.row.label_dice[n].percent() for n in label_names), p.row.mean_dice.percent()])
    text = ("Dice (%) on each fold's validation cases against pre-training iterations: mean ± sample "
            "standard deviation (ddof=1) over folds. Mean: mean over labels per fold, then over folds. LR: the "
            "learning rate the folds trained at (vox2vec_run.json).\n\n"
            + _markdown(header, body))
    spreads = seed_spreads(points)
    if spreads:
        text += ("\n\nSpread over pre-training seeds (mean Dice (%) over folds per seed; then mean ± sample "
                 "standard deviation over seeds):\n\n" + _markdown(
                     ["Setup", "Pre-training", "Iterations", "Per seed", "Over seeds"],
                     [[s.setup_label, s.run, f"{s.iteration:,}",
                       ", ".join(f"seed {seed}: {100 * m.mean:.1f}" for seed, m in s.per_seed.items()),
                       f"{s.over_seeds.percent()} (n={s.over_seeds.n} seeds)"] for s in spreads]))
    return text + _notes(problems) + "\n"


def write_curve_csv(points: Sequence[CurvePoint], label_names: Sequence[str], path: Path) -> None:
    """One line per setup and checkpoint; Dice as fractions, mean and std in separate columns."""
    header = ["setup", "label", "trainer", "pretraining_trainer", "pretraining_seed", "pretraining_iterations",
              "checkpoint", *_LR_COLUMNS, "num_folds", "folds"]
    for name in [*label_names, "mean"]:
        header += [f"{name}_dice_mean", f"{name}_dice_std"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in points:
            c = p.checkpoint
            line = [p.row.setup.name, p.row.setup.label, p.row.setup.trainer, "" if c is None else c.trainer,
                    _csv_int(None if c is None else c.seed), p.iteration, "" if c is None else str(c.path),
                    *_csv_learning_rate(p.row), len(p.row.folds), " ".join(map(str, p.row.folds))]
            for stats in [*(p.row.label_dice[n] for n in label_names), p.row.mean_dice]:
                line += [_csv_number(stats.mean), _csv_number(stats.std)]
            writer.writerow(line)

