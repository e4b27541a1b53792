"""The rows of the paper's Table 1/2 (a setup over its folds), written as Markdown and CSV.

Statistics (:mod:`.statistics` states the rules; paper Sect. 5: "mean value and standard
deviation of Dice score across folds"):

* per label: the fold's Dice for that label (nnU-Net's mean over the fold's validation cases),
  then mean and *sample* standard deviation (``ddof=1``) over folds; with one fold the standard
  deviation is undefined and shown as ``n/a`` (an empty cell in the CSV);
* mean over labels: per fold the mean over labels first, then mean ± sample std over folds
  (so it is the spread of whole-model scores between folds, as in Table 1, not of labels);
* a NaN Dice (a label absent from every validation case and never predicted) is left out of
  its average and reported.

* folds trained several times (``--repeats``, :mod:`.repeats`): each fold is the mean over its
  runs; every row states the runs per fold, and the table adds the run-to-run std of the mean
  over labels when a fold has several;
* learning rate: every row states the rate its folds trained at, from each fold's
  ``vox2vec_run.json`` (``initial_lr``): one value with its source (``budget NAME``: fixed by the
  training budget), or ``selected`` with each fold's choice (:mod:`.lr_selection`), or
  ``unrecorded`` for records written before the trainers recorded it;
* paired difference to from scratch on the same network (``Setup.reference``: the FPN's setups
  to ``scratch``, nnU-Net's U-Net's to ``unet_scratch``, when it is in the table): per fold, the
  setup's mean over labels minus the reference's on the same fold (the same validation cases),
  then mean ± sample std over the folds both have, its 95% Student-t interval and the reading
  ahead / level / behind (level whenever the interval holds 0).

The Markdown shows Dice in percent with one decimal, as the paper's tables do; the CSV keeps
nnU-Net's fractions in [0, 1] at full precision, with mean and std in separate columns.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from vox2vec_nnunet.benchmark.collect import FoldResult, Problem
from vox2vec_nnunet.benchmark.repeats import mean_over_labels, run_to_run_std
from vox2vec_nnunet.benchmark.statistics import MeanStd, mean_std, percent_interval, reading
from vox2vec_nnunet.training.segmentation import Vox2VecTrainer_FineTune
from vox2vec_nnunet.training.setups import Setup

T = TypeVar("T")

MIXED = "mixed"
UNKNOWN = "unknown"
UNRECORDED = "unrecorded"
FIXED, SELECTED = "fixed", "selected"


def format_lr(value: float | None) -> str:
    """A learning rate as the tables print it (``unrecorded`` for None)."""
    return UNRECORDED if value is None else f"{value:g}"


@dataclass(frozen=True)
class Row:
    """One setup summarised over its folds (one row of Table 1)."""

    setup: Setup
    folds: tuple[int, ...]
    label_dice: dict[str, MeanStd]
    mean_dice: MeanStd
    fold_mean_dice: tuple[float, ...]  # mean over labels per fold, aligned with ``folds``
    trainable_parameters: int | None  # None: unknown, or the folds disagree (then a Problem)
    backbone_source: str  # "pretrained", "random_init", MIXED or UNKNOWN
    num_iterations: int | None
    batch_size: int | None
    runs_per_fold: tuple[int, ...] = ()  # finished runs of each fold (:mod:`.repeats`), aligned with ``folds``
    run_to_run_std: float | None = None  # pooled over the folds with two runs or more
    fold_learning_rates: tuple[float | None, ...] = ()  # each fold's recorded initial_lr, aligned with ``folds``
    learning_rate_source: str | None = None  # the records' learning_rate_source, MIXED, or None: unrecorded
    selected: bool = False  # the folds trained at a learning rate chosen by :mod:`.lr_selection`
    selection_note: str = ""  # how, when not on each fold's own inner split

    def budget(self) -> str:
        if self.num_iterations is None or self.batch_size is None:
            return UNKNOWN
        return f"{self.num_iterations:,} × {self.batch_size}"

    def learning_rate_mode(self) -> str:
        """``selected``, ``fixed`` (one way for every fold, as recorded) or ``unrecorded``."""
        if self.selected:
            return SELECTED
        return UNRECORDED if all(lr is None for lr in self.fold_learning_rates) else FIXED

    def learning_rate(self) -> str:
        """The learning rate cell: ``0.003 (budget Demo)``, ``selected: f0 0.001, f1 0.003``,
        ``unrecorded``, or per fold when the folds differ without a selection."""
        per_fold = ", ".join(f"f{f} {format_lr(lr)}" for f, lr in zip(self.folds, self.fold_learning_rates))
        if self.selected:
            note = f" ({self.selection_note})" if self.selection_note else ""
            return f"selected{note}: {per_fold}"
        if self.learning_rate_mode() == UNRECORDED:
            return UNRECORDED
        if len(set(self.fold_learning_rates)) == 1:
            return f"{format_lr(self.fold_learning_rates[0])} ({self.learning_rate_source or MIXED})"
        return per_fold


def _agreed(setup: Setup, folds: Sequence[FoldResult], what: str,
            get: Callable[[FoldResult], T]) -> tuple[T | None, list[Problem]]:
    """The value every fold's run record gives for ``what``; None and a Problem if they differ."""
    values = {f.fold: get(f) for f in folds if f.run is not None}
    if len(set(values.values())) == 1:
        return next(iter(values.values())), []
    if not values:
        return None, []
    listed = ", ".join(f"fold {k}: {v}" for k, v in values.items())
    return None, [Problem(setup.name, None, f"folds disagree on {what} ({listed})")]


def summarise(setup: Setup, folds: Sequence[FoldResult]) -> tuple[Row, list[Problem]]:
    """The table row of ``setup`` from its finished folds (at least one)."""
    if not folds:
        raise ValueError(f"setup {setup.name!r} has no finished folds to summarise")
    problems: list[Problem] = []
    label_names = list(folds[0].dice)
    for f in folds:
        nan_labels = [name for name, d in f.dice.items() if not math.isfinite(d)]
        if nan_labels:
            problems.append(Problem(setup.name, f.fold, f"Dice is NaN for {', '.join(nan_labels)}; "
                                    f"left out of the averages"))
    per_fold_mean = [mean_over_labels(f.dice) for f in folds]
    params, p1 = _agreed(setup, folds, "trainable parameters", lambda f: f.run.trainable_parameters)
    source, p2 = _agreed(setup, folds, "backbone source", lambda f: f.run.backbone_source)
    budget, p3 = _agreed(setup, folds, "training budget (iterations, batch size)",
                         lambda f: (f.run.num_iterations, f.run.batch_size))
    problems += p1 + p2 + p3
    if source is None:
        source = MIXED if any(f.run is not None for f in folds) else UNKNOWN
    lr_sources = {f.run.learning_rate_source for f in folds if f.run is not None and f.run.initial_lr is not None}
    row = Row(setup=setup, folds=tuple(f.fold for f in folds),
              label_dice={name: mean_std([f.dice[name] for f in folds]) for name in label_names},
              mean_dice=mean_std(per_fold_mean), fold_mean_dice=tuple(per_fold_mean),
              trainable_parameters=params,
              backbone_source=source,
              num_iterations=None if budget is None else budget[0],
              batch_size=None if budget is None else budget[1],
              runs_per_fold=tuple(f.num_runs for f in folds), run_to_run_std=run_to_run_std(folds),
              fold_learning_rates=tuple(None if f.run is None else f.run.initial_lr for f in folds),
              learning_rate_source=(lr_sources.pop() if len(lr_sources) == 1 else MIXED) if lr_sources else None)
    return row, problems


@dataclass(frozen=True)
class PairedDifference:
    """Per-fold differences of the mean Dice over labels (setup minus reference) on the folds
    both have, their mean ± sample std, 95% interval and reading (:mod:`.statistics`)."""

    folds: tuple[int, ...]
    differences: tuple[float, ...]
    stats: MeanStd

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.stats.interval()

    @property
    def reading(self) -> str:
        return reading(self.interval)

    def percent_per_fold(self) -> str:
        return ", ".join(f"f{f} {100 * d:+.1f}" for f, d in zip(self.folds, self.differences)) or "n/a"

    def percent(self) -> str:
        if self.stats.n == 0:
            return "n/a"
        std = "n/a" if self.stats.std is None else f"{100 * self.stats.std:.1f}"
        return f"{100 * self.stats.mean:+.1f} ± {std}"

    def percent_interval(self) -> str:
        return percent_interval(self.interval)

    def short(self) -> str:
        """``+5.0 [-2.1, +12.1] level``: mean, 95% interval and reading, in percentage points."""
        if self.stats.n == 0:
            return "n/a"
        return f"{100 * self.stats.mean:+.1f} {self.percent_interval()} {self.reading}"


def paired_difference(row: Row, reference: Row) -> PairedDifference:
    """``row`` minus ``reference``, fold by fold (mean Dice over labels), on their common folds."""
    theirs = dict(zip(reference.folds, reference.fold_mean_dice))
    pairs = [(f, d - theirs[f]) for f, d in zip(row.folds, row.fold_mean_dice)
             if f in theirs and math.isfinite(d) and math.isfinite(theirs[f])]
    return PairedDifference(tuple(f for f, _ in pairs), tuple(d for _, d in pairs),
                            mean_std([d for _, d in pairs]))


def _reference(row: Row, rows: Sequence[Row]) -> Row | None:
    """The row ``row`` is paired with (from scratch on the same network), if it is in ``rows`` and
    is not ``row`` itself."""
    return next((r for r in rows if r.setup.name == row.setup.reference and r is not row), None)


def paired_differences(rows: Sequence[Row]) -> list[PairedDifference | None]:
    """Each row's paired difference to its reference; empty when no row has its reference."""
    paired = [None if (ref := _reference(r, rows)) is None else paired_difference(r, ref) for r in rows]
    return paired if any(p is not None for p in paired) else []


def _repeated(rows: Sequence[Row]) -> bool:
    return any(n > 1 for r in rows for n in r.runs_per_fold)


def _runs(row: Row) -> str:
    """Runs per fold: ``2``, or ``1-2`` when the folds differ."""
    low, high = min(row.runs_per_fold, default=1), max(row.runs_per_fold, default=1)
    return str(low) if low == high else f"{low}-{high}"


def _run_to_run(row: Row) -> str:
    return "n/a" if row.run_to_run_std is None else f"{100 * row.run_to_run_std:.1f}"


def _parameters(row: Row) -> str:
    return UNKNOWN if row.trainable_parameters is None else f"{row.trainable_parameters:,}"


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _notes(problems: Sequence[Problem]) -> str:
    return "" if not problems else "\n\nNotes:\n\n" + "\n".join(f"- {p}" for p in problems)


def _learning_rate_caption(rows: Sequence[Row]) -> str:
    """What the LR column says, and fine-tuning's backbone range when a fine-tuning row is shown."""
    text = (" LR: the learning rate of each fold as its vox2vec_run.json records it (initial_lr): one value "
            "with its source (budget NAME: fixed by the training budget), or selected, each fold's value chosen "
            "on an inner split of that fold's training cases (lr_selection.md); unrecorded: a record written "
            "before the trainers recorded it.")
    if any(r.setup.trainer.startswith(Vox2VecTrainer_FineTune.__name__) for r in rows):
        text += (f" Fine-tuning's LR is its head's: its backbone stays frozen for the first third, then warms up "
                 f"{Vox2VecTrainer_FineTune.backbone_start_lr:g} -> {Vox2VecTrainer_FineTune.backbone_end_lr:g} "
                 f"whatever the head's LR (paper Sect. 4.2).")
    return text


_PAIRED_CAPTION = (" Δ: the setup's Mean minus that of from scratch on the same network (the FPN's, or nnU-Net's "
                   "U-Net's) on the same fold (percentage points), then mean ± sample std over the folds both have, "
                   "the 95% interval of the mean (Student t over the paired per-fold differences, n - 1 degrees of "
                   "freedom; a fold trained several times counts as its mean over runs) and the reading: ahead or "
                   "behind when the interval lies above or below 0, level whenever it holds 0 (n/a: one fold).")


def dice_table_markdown(rows: Sequence[Row], label_names: Sequence[str],
                        problems: Sequence[Problem] = ()) -> str:
    """Table 1 as Markdown: Dice (%) mean ± sample std over folds, then the notes."""
    header = ["Setup", "Backbone", "Trainable params", "Budget (iter. × batch)", "LR", "Folds", "Runs per fold",
              *label_names, "Mean"]
    body = [[r.setup.label, r.backbone_source, _parameters(r), r.budget(), r.learning_rate(), str(len(r.folds)),
             _runs(r), *(r.label_dice[n].percent() for n in label_names), r.mean_dice.percent()]
            for r in rows]
    caption = ("Dice (%) on each fold's validation cases: mean ± sample standard deviation "
               "(ddof=1) over folds, n/a with a single fold. Mean: mean over labels per fold, "
               "then over folds." + _learning_rate_caption(rows))
    if _repeated(rows):
        header.append("Run-to-run std")
        for r, cells in zip(rows, body):
            cells.append(_run_to_run(r))
        caption += (" Folds trained several times count as the mean over their runs; run-to-run std: the "
                    "sample std of a fold's Mean over its runs, pooled over folds (percentage points).")
    paired = paired_differences(rows)
    if paired:
        header += ["Δ Mean vs from scratch, per fold", "Δ Mean (paired)", "Δ 95% interval", "Reading"]
        for p, cells in zip(paired, body):
            cells += ["—"] * 4 if p is None else [p.percent_per_fold(), p.percent(), p.percent_interval(),
                                                  p.reading]
        caption += _PAIRED_CAPTION
    return caption + "\n\n" + _markdown(header, body) + _notes(problems) + "\n"


def _csv_number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(value)


def _csv_per_fold(folds: Sequence[int], values: Sequence[float | None]) -> str:
    """``fold:value`` pairs, space-separated (an empty value for None or NaN)."""
    return " ".join(f"{f}:{_csv_number(v)}" for f, v in zip(folds, values))


def _csv_int(value: int | None) -> str:
    return "" if value is None else str(value)


_LR_COLUMNS = ["learning_rate", "learning_rate_mode", "learning_rate_per_fold"]
_PAIRED_COLUMNS = ["paired_reference", "paired_diff_per_fold", "paired_diff_mean", "paired_diff_std",
                   "paired_diff_ci95_low", "paired_diff_ci95_high", "paired_reading"]


def _csv_learning_rate(row: Row) -> list[str]:
    return [row.learning_rate(), row.learning_rate_mode(), _csv_per_fold(row.folds, row.fold_learning_rates)]


def _csv_paired(row: Row, paired: PairedDifference | None) -> list[str]:
    if paired is None:
        return [""] * len(_PAIRED_COLUMNS)
    low, high = paired.interval or (None, None)
    return [row.setup.reference, _csv_per_fold(paired.folds, paired.differences), _csv_number(paired.stats.mean),
            _csv_number(paired.stats.std), _csv_number(low), _csv_number(high), paired.reading]


def write_dice_table_csv(rows: Sequence[Row], label_names: Sequence[str], path: Path) -> None:
    """Table 1 as CSV: one line per setup, Dice as fractions, mean and std in separate columns."""
    header = ["setup", "label", "trainer", "backbone_source", "trainable_parameters",
              "num_iterations", "batch_size", *_LR_COLUMNS, "num_folds", "folds"]
    for name in label_names:
        header += [f"{name}_dice_mean", f"{name}_dice_std"]
    header += ["mean_dice_mean", "mean_dice_std", "mean_dice_per_fold", "runs_per_fold", "run_to_run_std"]
    paired = paired_differences(rows)
    if paired:
        header += _PAIRED_COLUMNS
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r, p in zip(rows, paired or [None] * len(rows)):
            line = [r.setup.name, r.setup.label, r.setup.trainer, r.backbone_source,
                    _csv_int(r.trainable_parameters), _csv_int(r.num_iterations), _csv_int(r.batch_size),
                    *_csv_learning_rate(r), len(r.folds), " ".join(map(str, r.folds))]
            for stats in [*(r.label_dice[n] for n in label_names), r.mean_dice]:
                line += [_csv_number(stats.mean), _csv_number(stats.std)]
            line += [_csv_per_fold(r.folds, r.fold_mean_dice), _csv_per_fold(r.folds, r.runs_per_fold),
                     _csv_number(r.run_to_run_std)]
            if paired:
                line += _csv_paired(r, p)
            writer.writerow(line)


def all_cases_label(all_cases: Sequence[int]) -> str:
    """How the regular folds' result is named beside k labeled cases: ``all (6)`` or ``all (5-6)``,
    the number of training cases of the regular folds."""
    low, high = min(all_cases), max(all_cases)
    return f"all ({low})" if low == high else f"all ({low}-{high})"


def _labeled_paired(rows: Sequence[tuple[int, Row]]) -> dict[tuple[int, str], PairedDifference]:
    """(labeled count, setup name) -> the setup's paired difference to its reference at that count."""
    by_count: dict[int, dict[str, Row]] = {}
    for k, row in rows:
        by_count.setdefault(k, {})[row.setup.name] = row
    return {(k, name): paired_difference(row, by_name[row.setup.reference])
            for k, by_name in by_count.items() for name, row in by_name.items()
            if row.setup.reference in by_name and row.setup.reference != name}


def label_efficiency_markdown(rows: Sequence[tuple[int, Row]], problems: Sequence[Problem] = (),
                              all_labeled: Sequence[Row] = (), all_cases: Sequence[int] = ()) -> str:
    """Mean Dice (%) per setup (rows) and number of labeled training cases (columns), ending in
    the setup's result with all labels when given (``all_labeled``: the regular folds, which
    train on ``all_cases`` cases each), the same as the label-efficiency figure; then each
    cell's learning rate and runs per fold, and the paired differences to from scratch."""
    columns: list[tuple[str, dict[str, Row]]] = []
    for k in sorted({k for k, _ in rows}):
        columns.append((f"{k} labeled", {r.setup.name: r for n, r in rows if n == k}))
    with_all = bool(all_labeled and all_cases)
    if with_all:
        columns.append((all_cases_label(all_cases), {r.setup.name: r for r in all_labeled}))
    setups = list(dict.fromkeys(r.setup.name for _, r in rows))
    first = {r.setup.name: r for _, r in reversed(rows)}
    repeated = _repeated([r for _, by in columns for r in by.values()])
    body = []
    for name in setups:
        cells = [f"{by[name].mean_dice.percent()} (n={len(by[name].folds)}"
                 f"{f', {_runs(by[name])} runs' if repeated else ''})" if name in by else "—"
                 for _, by in columns]
        body.append([first[name].setup.label, first[name].backbone_source, _parameters(first[name]), *cells])
    caption = ("Mean Dice (%) over labels on each regular fold's validation cases, training on k "
               "labeled cases drawn from that fold's training cases (nested, seeded)"
               + (", or on all of them" if with_all else "")
               + ": mean ± sample standard deviation (ddof=1) over folds, n = number of folds"
               + ("; a fold trained several times counts as the mean over its runs." if repeated else "."))
    text = caption + "\n\n" + _markdown(["Setup", "Backbone", "Trainable params", *(c for c, _ in columns)], body)
    every_row = [r for _, by in columns for r in by.values()]
    text += ("\n\nLearning rate and runs per fold of each cell." + _learning_rate_caption(every_row) + "\n\n"
             + _markdown(["Setup", *(c for c, _ in columns)],
                         [[first[name].setup.label,
                           *(f"{by[name].learning_rate()}; {_runs(by[name])} run(s) per fold" if name in by else "—"
                             for _, by in columns)] for name in setups]))
    paired_body = []
    for name in setups:
        setup = first[name].setup
        if setup.name == setup.reference or not any(setup.reference in by for _, by in columns):
            continue
        cells = []
        for _, by in columns:
            paired = (paired_difference(by[name], by[setup.reference])
                      if name in by and setup.reference in by else None)
            cells.append("—" if paired is None else f"{paired.short()} ({paired.percent_per_fold()})")
        paired_body.append([setup.label, *cells])
    if paired_body:
        text += ("\n\nPaired difference to from scratch on the same network (percentage points): per fold "
                 "(f = the split's fold index) the setup's mean Dice minus that of from scratch on the same "
                 "validation cases, then the mean over folds, its 95% interval (Student t over the paired "
                 "per-fold differences) and the reading: ahead or behind when the interval lies above or below 0, "
                 "level whenever it holds 0 (n/a: one fold).\n\n"
                 + _markdown(["Setup", *(c for c, _ in columns)], paired_body))
    return text + _notes(problems) + "\n"


def write_label_efficiency_csv(rows: Sequence[tuple[int, Row]], path: Path) -> None:
    """One line per setup and number of labeled cases; Dice as fractions; the paired difference
    to from scratch at the same number of labeled cases where both were trained."""
    paired = _labeled_paired(rows)
    order = {name: i for i, name in enumerate(dict.fromkeys(r.setup.name for _, r in rows))}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setup", "label", "trainer", "backbone_source", "trainable_parameters",
                         "num_labeled", *_LR_COLUMNS, "num_folds", "fold_indices", "mean_dice_mean",
                         "mean_dice_std", "runs_per_fold", "run_to_run_std", *_PAIRED_COLUMNS])
        for num_labeled, r in sorted(rows, key=lambda kr: (order[kr[1].setup.name], kr[0])):
            writer.writerow([r.setup.name, r.setup.label, r.setup.trainer, r.backbone_source,
                             _csv_int(r.trainable_parameters), num_labeled, *_csv_learning_rate(r), len(r.folds),
                             " ".join(map(str, r.folds)), _csv_number(r.mean_dice.mean),
                             _csv_number(r.mean_dice.std), _csv_per_fold(r.folds, r.runs_per_fold),
                             _csv_number(r.run_to_run_std),
                             *_csv_paired(r, paired.get((num_labeled, r.setup.name)))])
