"""Repeated runs of every fold: nnU-Net's training is not deterministic, so one run per fold is
one draw.

nnU-Net seeds neither its data augmentation nor its data loader's worker processes, so the same
fold trained twice with the same settings ends differently; at demo scale (a few training cases,
500 iterations) a rerun of a fold moved by tens of points (docs/results.md, "Repeated runs"). A
gap between two setups means something only where it exceeds both the fold-to-fold spread and
this run-to-run spread. With
``--repeats R`` every fold is trained R times: run 1 is the regular results folder (the one
``nnUNetv2_predict`` and ``nnUNetv2_find_best_configuration`` use), run r >= 2 a results root of
its own, ``$nnUNet_results/DatasetXXX/vox2vec_repeats/run{r}``, given to ``nnUNetv2_train`` as its
``nnUNet_results`` (the same mechanism as the pre-training curve's roots).

A fold's result is then the mean over its finished runs, per label (so the table's statistics
over folds, the paired differences and the figures treat it as one fold, only less noisy), and
each row reports the runs per fold and the run-to-run standard deviation: per fold the sample
std (``ddof=1``) of the runs' mean Dice over labels, pooled over the folds with at least two runs
(the root of the mean variance).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vox2vec_nnunet.benchmark.collect import FoldResult, Problem, collect_setup
from vox2vec_nnunet.benchmark.layout import ResultsLayout
from vox2vec_nnunet.training.setups import Setup

REPEATS_SUBDIR = "vox2vec_repeats"
"""Folder of ``$nnUNet_results/DatasetXXX`` that holds one results root per repeated run."""


def repeat_results_root(dataset_results_dir: Path, run: int) -> Path | None:
    """The ``nnUNet_results`` of run ``run`` (1-based); None for run 1, the regular folder."""
    if run < 1:
        raise ValueError(f"runs are numbered from 1, got {run}")
    return None if run == 1 else dataset_results_dir / REPEATS_SUBDIR / f"run{run}"


def repeat_layout(layout: ResultsLayout, run: int) -> ResultsLayout:
    """Where run ``run`` of ``layout``'s setups keeps its folds."""
    root = repeat_results_root(layout.dataset_results_dir, run)
    return layout if root is None else ResultsLayout(root / layout.dataset_results_dir.name, layout.plans,
                                                     layout.configuration)


def _finite_mean(values: Iterable[float]) -> float:
    """The mean of the finite ``values`` (NaN when none is)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def mean_over_labels(dice: dict[str, float]) -> float:
    """A fold's mean Dice over its labels, NaN labels left out (NaN when all are)."""
    return _finite_mean(dice.values())


def average_runs(runs: Sequence[Sequence[FoldResult]]) -> list[FoldResult]:
    """Each fold that finished in at least one run, as the mean over its runs per label (NaN
    runs left out of a label's mean), with the run record of its first run and every run's mean
    over labels in ``run_mean_dice``; folds in order of first appearance."""
    by_fold: dict[int, list[FoldResult]] = {}
    for results in runs:
        for result in results:
            by_fold.setdefault(result.fold, []).append(result)
    averaged = []
    for fold, results in by_fold.items():
        dice = {name: _finite_mean(r.dice.get(name, math.nan) for r in results) for name in results[0].dice}
        run = next((r.run for r in results if r.run is not None), None)
        averaged.append(FoldResult(fold, dice, run, tuple(mean_over_labels(r.dice) for r in results)))
    return averaged


def collect_runs(layout: ResultsLayout, setup: Setup, folds: Sequence[int], labels: dict[str, str],
                 repeats: int) -> tuple[list[FoldResult], list[Problem]]:
    """``setup``'s finished folds among ``folds`` over runs 1..``repeats``, each the mean over its
    runs (one run: the fold as nnU-Net left it); problems of runs >= 2 say which run."""
    runs: list[list[FoldResult]] = []
    problems: list[Problem] = []
    for run in range(1, repeats + 1):
        found, p = collect_setup(repeat_layout(layout, run), setup, folds, labels)
        runs.append(found)
        problems += p if run == 1 else [Problem(q.setup, q.fold, f"run {run}: {q.message}", q.path) for q in p]
    return (runs[0] if repeats == 1 else average_runs(runs)), problems


def run_to_run_std(folds: Sequence[FoldResult]) -> float | None:
    """The pooled run-to-run standard deviation of the mean Dice over labels: per fold with at
    least two finished runs the sample variance (``ddof=1``) over its runs, then the root of the
    mean over those folds; None when no fold has two runs."""
    variances = []
    for f in folds:
        values = [v for v in f.run_mean_dice if math.isfinite(v)]
        if len(values) > 1:
            variances.append(float(np.var(values, ddof=1)))
    return float(np.sqrt(np.mean(variances))) if variances else None
