"""What a benchmark is asked to do (:class:`BenchmarkRequest`) and what it gives back
(:class:`BenchmarkReport`); :func:`vox2vec_nnunet.benchmark.pipeline.run_benchmark` turns one into
the other."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vox2vec_nnunet.benchmark.collect import Problem
from vox2vec_nnunet.benchmark.lr_selection import DEFAULT_LR_GRID, DEFAULT_UNET_LR_GRID, Selection, check_grid
from vox2vec_nnunet.benchmark.pretraining_curve import CurvePoint
from vox2vec_nnunet.benchmark.runner import Outcome
from vox2vec_nnunet.benchmark.table import Row
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.training.setups import SETUPS

DEFAULT_SETUPS = tuple(name for name, setup in SETUPS.items() if not setup.own_unet)
"""Every setup but nnU-Net's U-Nets' (which need ``unet_plans``)."""


@dataclass(frozen=True)
class BenchmarkRequest:
    """One benchmark: which dataset, plans, setups and folds, whether to train what is missing
    (``run``), and the optional modes: ``labeled`` (labeled counts: train on k labeled cases of
    each fold), ``pretraining_curve`` (checkpoints), ``repeats`` (runs per fold) and ``select_lr``
    (each setup's learning rate chosen per fold, :mod:`.lr_selection`, from ``lr_grid`` for the
    FPN setups and ``unet_lr_grid`` for nnU-Net's U-Nets)."""

    dataset: str
    setups: tuple[str, ...] = DEFAULT_SETUPS
    plans: str = "Vox2VecPlans"
    configuration: str = "3d_vox2vec"
    unet_plans: str | None = None
    unet_configuration: str = "3d_fullres"
    trainer_variant: str | None = None
    folds: int = 5
    fold_ids: tuple[int, ...] = ()  # empty: all K
    pretrained_weights: Path | None = None
    unet_pretrained_weights: Path | None = None
    run: bool = False
    device: str | None = None
    labeled: tuple[int, ...] = ()
    pretraining_curve: tuple[Path, ...] = ()
    repeats: int = 1
    select_lr: bool = False
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    unet_lr_grid: tuple[float, ...] = DEFAULT_UNET_LR_GRID
    overwrite_splits: bool = False
    output: Path | None = None  # default: $nnUNet_results/DatasetXXX/vox2vec_benchmark

    def check(self) -> None:
        """Refuse (:class:`Vox2VecError`) what cannot be run, before anything is read or written."""
        if self.labeled and min(self.labeled) < 1:
            raise Vox2VecError("--labeled: numbers of labeled cases must be >= 1")
        if self.overwrite_splits and not self.run:
            raise Vox2VecError("--overwrite_splits only applies with --run (splits are written there)")
        if self.folds < 2:
            raise Vox2VecError(f"--folds must be at least 2, got {self.folds}")
        if self.repeats < 1:
            raise Vox2VecError(f"--repeats must be at least 1, got {self.repeats}")
        bad = [f for f in self.fold_ids if not 0 <= f < self.folds]
        if bad:
            raise Vox2VecError(f"--fold_ids {bad} outside 0..{self.folds - 1} (--folds {self.folds})")
        if self.pretraining_curve and (self.pretrained_weights is not None or self.labeled or self.repeats > 1
                                       or self.select_lr):
            raise Vox2VecError("--pretraining_curve takes the place of --pretrained_weights and does not go with "
                               "--labeled, --repeats or --select_lr")
        try:
            check_grid(self.lr_grid, "--lr_grid")
            check_grid(self.unet_lr_grid, "--unet_lr_grid")
        except ValueError as e:
            raise Vox2VecError(str(e)) from None

    @property
    def scored_fold_ids(self) -> list[int]:
        """The regular folds to train and collect: ``fold_ids`` without repeats, else all K."""
        return list(dict.fromkeys(self.fold_ids)) if self.fold_ids else list(range(self.folds))

    @property
    def labeled_counts(self) -> list[int]:
        return sorted(set(self.labeled))


@dataclass
class BenchmarkReport:
    """What a benchmark found and wrote: the tables as printed (title, Markdown), their rows, the
    learning-rate choices, the settings the figures depend on, the files written, where the
    final runs are, and the folds that failed to train."""

    dataset: str
    output: Path
    tables: list[tuple[str, str]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    labeled_rows: list[tuple[int, Row]] = field(default_factory=list)
    curve_points: list[CurvePoint] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)

    @property
    def collected_anything(self) -> bool:
        return bool(self.rows or self.labeled_rows or self.curve_points)

    @property
    def exit_code(self) -> int:
        """0 when everything asked for ran, 1 when a fold failed or nothing could be collected."""
        return 1 if self.failures or not self.collected_anything else 0

    def text(self) -> str:
        """What the command prints on standard output."""
        parts = [f"\n{title}\n\n{markdown}" for title, markdown in self.tables]
        parts.append("settings the figures depend on:\n" + "\n".join(self.settings))
        if self.where:
            parts.append("\n".join(self.where))
        parts.append("written:\n" + "\n".join(f"  {p}" for p in self.written))
        return "\n".join(parts)

    def errors(self) -> str:
        """What the command prints on standard error (empty when all went well)."""
        if self.failures:
            return f"\n{len(self.failures)} fold(s) failed:\n" + "\n".join(
                f"  {o.job.prefix} {o.action.value}: {o.error}" for o in self.failures)
        if not self.collected_anything:
            return "\nno finished fold of any setup was found; see the notes above"
        return ""
