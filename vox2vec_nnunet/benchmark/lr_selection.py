"""Each setup at its own learning rate, chosen per fold by one rule that never sees the scored cases.

At one shared learning rate the comparison of the evaluation setups hinges on that rate: at a
short budget end-to-end training from scratch and a frozen-backbone probe have different best
rates, and whichever setup the shared rate suits wins. With ``--select_lr`` every setup gets its
rate by the same rule, once for every scored fold — a regular fold f, or its split of k labeled
cases (``--labeled``):

1. an inner split of that scored fold's training cases only (:func:`.splits.inner_split`: about a
   third of them, at least one, validate; drawn by a permutation seeded by the fold), appended to
   ``splits_final.json`` after the existing entries;
2. one run per value of the grid on the inner split: the setup's own trainer at its own budget
   (iterations, batch), the value given to ``nnUNetv2_train`` as ``VOX2VEC_LEARNING_RATE``, in the
   results root ``$nnUNet_results/DatasetXXX/vox2vec_selection/lr<value>`` (its
   ``nnUNet_results``): an ordinary nnU-Net run, resumed and reused like any fold;
3. the value whose run has the best foreground mean Dice on the inner validation cases (nnU-Net's
   ``fold_X/validation/summary.json``, ``foreground_mean`` Dice) is chosen; equal Dice goes to the
   smaller value, a NaN Dice counts as the worst; when a value's inner run is missing or its run
   record names another learning rate, the fold gets no choice (reported; it is not trained);
4. the scored fold is trained on all its training cases at that value and scored on its
   validation cases as usual, in the results root ``$nnUNet_results/DatasetXXX/vox2vec_selection/
   selected`` (``--repeats``: run r >= 2 under ``selected/DatasetXXX/vox2vec_repeats/run<r>``), so
   the runs at the budget's rate in the regular results folder are never touched and the two can
   be compared.

The scored fold's validation cases take no part in steps 1-3. A split of one labeled case cannot
be split again: it takes the choice of its regular fold, made on that fold's inner split, and the
tables say so. With ``--repeats R`` the choice is made once per fold (inner runs are not
repeated) and the final runs are repeated. The grid is the same for every setup of an arm: Adam
rates for the FPN setups (default 1e-4 ... 3e-3, around the paper's 3e-4 and the demo budget's
3e-3), SGD rates for nnU-Net's U-Nets (default 1e-3 ... 3e-2, around nnU-Net's 1e-2).
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vox2vec_nnunet.benchmark.collect import Problem, RunRecord, read_foreground_dice
from vox2vec_nnunet.benchmark.layout import RUN_RECORD, SUMMARY, ResultsLayout
from vox2vec_nnunet.benchmark.runner import Job
from vox2vec_nnunet.benchmark.splits import SplitsState
from vox2vec_nnunet.benchmark.table import Row, _markdown, _notes, format_lr
from vox2vec_nnunet.training.setups import Setup

SELECTION_SUBDIR = "vox2vec_selection"
"""Folder of ``$nnUNet_results/DatasetXXX`` with a results root per grid value and the final runs'."""
SELECTED = "selected"
DEFAULT_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3)
"""Adam, the FPN setups."""
DEFAULT_UNET_LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)
"""SGD with Nesterov momentum 0.99, nnU-Net's U-Nets."""
BORROWED_NOTE = "1 labeled case: the regular fold's choice"


def check_grid(grid: Sequence[float], option: str) -> tuple[float, ...]:
    """``grid`` sorted, each value positive and finite and with a folder of its own; ``ValueError``
    naming ``option`` otherwise."""
    bad = [v for v in grid if not 0 < v < math.inf]
    if bad or not grid:
        raise ValueError(f"{option}: learning rates must be positive numbers, got {' '.join(map(str, grid))}")
    names = [lr_folder_name(v) for v in grid]
    if len(set(names)) != len(names):
        raise ValueError(f"{option}: values repeat (as {', '.join(names)})")
    return tuple(sorted(grid))


def lr_folder_name(lr: float) -> str:
    return f"lr{lr:g}"


def inner_results_root(dataset_results_dir: Path, lr: float) -> Path:
    """The ``nnUNet_results`` of the inner runs at learning rate ``lr``."""
    return dataset_results_dir / SELECTION_SUBDIR / lr_folder_name(lr)


def selected_results_root(dataset_results_dir: Path) -> Path:
    """The ``nnUNet_results`` of the final runs at the selected learning rates."""
    return dataset_results_dir / SELECTION_SUBDIR / SELECTED


def _under(root: Path, layout: ResultsLayout) -> ResultsLayout:
    return ResultsLayout(root / layout.dataset_results_dir.name, layout.plans, layout.configuration)


def inner_layout(layout: ResultsLayout, lr: float) -> ResultsLayout:
    return _under(inner_results_root(layout.dataset_results_dir, lr), layout)


def selected_layout(layout: ResultsLayout) -> ResultsLayout:
    return _under(selected_results_root(layout.dataset_results_dir), layout)


@dataclass(frozen=True)
class ScoredFold:
    """A fold of ``splits_final.json`` the tables score: regular fold ``fold`` (``num_labeled``
    None) or its split of ``num_labeled`` labeled cases, at fold index ``index``."""

    index: int
    fold: int
    num_labeled: int | None = None

    @property
    def has_inner_split(self) -> bool:
        """Whether its training cases can be split again (at least two)."""
        return self.num_labeled is None or self.num_labeled >= 2

    def describe(self) -> str:
        return f"fold {self.fold}" if self.num_labeled is None else \
            f"{self.num_labeled} labeled, fold {self.fold} (split {self.index})"


def scored_folds(state: SplitsState | None, fold_ids: Sequence[int], labeled_counts: Sequence[int]
                 ) -> list[ScoredFold]:
    """The regular folds ``fold_ids``, then their splits of each of ``labeled_counts`` labeled cases
    that ``state`` has."""
    scored = [ScoredFold(f, f) for f in fold_ids]
    known = {(s.num_labeled, s.fold): s.fold_index for s in (state.labeled if state is not None else [])}
    scored += [ScoredFold(known[(k, f)], f, k) for k in labeled_counts for f in fold_ids if (k, f) in known]
    return scored


@dataclass(frozen=True)
class Selection:
    """The learning rate of ``setup`` on ``scored``: the inner runs' foreground mean Dice by grid
    value (None: no finished run at that value), made on the inner split of ``made_on`` (the
    scored fold itself, or its regular fold for one labeled case) at fold index ``inner_index``
    with ``inner_cases`` (training, validation) cases; ``learning_rate`` None: no choice."""

    setup: Setup
    scored: ScoredFold
    made_on: ScoredFold
    inner_index: int | None
    inner_cases: tuple[int, int] | None
    scores: Mapping[float, float | None]
    learning_rate: float | None

    @property
    def borrowed(self) -> bool:
        return self.made_on != self.scored


def choose(scores: Mapping[float, float | None]) -> float | None:
    """The value with the best score, equal scores to the smaller value, NaN the worst; None when
    a value has no score."""
    if not scores or any(v is None for v in scores.values()):
        return None
    return max(scores, key=lambda lr: (-math.inf if math.isnan(scores[lr]) else scores[lr], -lr))


def _inner_score(layout: ResultsLayout, setup: Setup, scored: ScoredFold, inner_index: int, lr: float
                 ) -> tuple[float | None, Problem | None]:
    """The foreground mean Dice of the inner run at ``lr``, or None and why."""
    fold_dir = inner_layout(layout, lr).fold_dir(setup.trainer, inner_index)
    where = f"{scored.describe()}, inner split {inner_index}"
    if not (fold_dir / SUMMARY).is_file():
        return None, Problem(setup.name, None, f"{where}: inner run at lr {lr:g} not finished", fold_dir)
    try:
        dice = read_foreground_dice(fold_dir / SUMMARY)
        recorded = RunRecord.read(fold_dir / RUN_RECORD).initial_lr if (fold_dir / RUN_RECORD).is_file() else None
    except ValueError as e:
        return None, Problem(setup.name, None, f"{where}: {e}")
    if recorded is None or not math.isclose(recorded, lr, rel_tol=1e-9):
        return None, Problem(setup.name, None, f"{where}: the inner run records learning rate {format_lr(recorded)}, "
                             f"not {lr:g}; delete it to run it again", fold_dir)
    return dice, None


def select(layout: ResultsLayout, setup: Setup, scored: Sequence[ScoredFold], state: SplitsState | None,
           grid: Sequence[float]) -> tuple[list[Selection], list[Problem]]:
    """``setup``'s choice on every scored fold, from its inner runs under ``layout``'s
    ``vox2vec_selection`` roots (see the module docstring); reads nothing of the scored folds'
    own results."""
    selections: dict[ScoredFold, Selection] = {}
    problems: list[Problem] = []
    for s in (s for s in scored if s.has_inner_split):
        try:
            if state is None:
                raise KeyError("no splits_final.json")
            index = state.inner_index(s.fold, s.num_labeled)
        except KeyError as e:
            problems.append(Problem(setup.name, s.index, f"{s.describe()}: {e.args[0]}"))
            selections[s] = Selection(setup, s, s, None, None, {}, None)
            continue
        scores: dict[float, float | None] = {}
        for lr in grid:
            scores[lr], problem = _inner_score(layout, setup, s, index, lr)
            if problem is not None:
                problems.append(problem)
        cases = (len(state.splits[index]["train"]), len(state.splits[index]["val"]))
        selections[s] = Selection(setup, s, s, index, cases, scores, choose(scores))
    by_fold = {s.fold: selection for s, selection in selections.items() if s.num_labeled is None}
    for s in (s for s in scored if not s.has_inner_split):
        regular = by_fold.get(s.fold)
        if regular is None:
            problems.append(Problem(setup.name, s.index, f"{s.describe()}: one labeled case takes its regular fold's "
                                    f"choice, but fold {s.fold} is not among the folds"))
            selections[s] = Selection(setup, s, ScoredFold(s.fold, s.fold), None, None, {}, None)
        else:
            selections[s] = replace(regular, scored=s)
    return [selections[s] for s in scored], problems


def inner_jobs(setup: Setup, scored: Sequence[ScoredFold], state: SplitsState, lr: float) -> list[Job]:
    """The inner runs of ``setup`` at ``lr`` for the scored folds that have an inner split."""
    return [Job(setup, state.inner_index(s.fold, s.num_labeled), f"inner split of {s.describe()}", lr)
            for s in scored if s.has_inner_split]


def mark_selected(row: Row, selections: Sequence[Selection]) -> tuple[Row, list[Problem]]:
    """``row`` (collected from the final runs' results root) marked as trained at selected rates;
    a fold whose run record names another rate than its choice is reported."""
    chosen = {s.scored.index: s for s in selections if s.setup.name == row.setup.name}
    problems = []
    for fold, lr in zip(row.folds, row.fold_learning_rates):
        selection = chosen.get(fold)
        if selection is None or selection.learning_rate is None:
            problems.append(Problem(row.setup.name, fold, f"trained at {format_lr(lr)} but no learning rate is "
                                    f"chosen for it now (see lr_selection.md)"))
        elif lr is None or not math.isclose(lr, selection.learning_rate, rel_tol=1e-9):
            problems.append(Problem(row.setup.name, fold, f"trained at {format_lr(lr)}, but the choice is now "
                                    f"{selection.learning_rate:g}; delete the fold to train it again"))
    borrowed = any(chosen[f].borrowed for f in row.folds if f in chosen)
    return replace(row, selected=True, selection_note=BORROWED_NOTE if borrowed else ""), problems


def _scores_text(selection: Selection) -> str:
    return ", ".join(f"{lr:g}: {'missing' if d is None else f'{100 * d:.1f}'}"
                     for lr, d in selection.scores.items()) or "n/a"


def selection_markdown(selections: Sequence[Selection], problems: Sequence[Problem] = ()) -> str:
    """One row per setup and scored fold: the inner split, each grid value's foreground mean Dice
    (%) on the inner validation cases, and the choice."""
    body = []
    for s in selections:
        if s.borrowed:
            inner = f"fold {s.made_on.fold}'s ({BORROWED_NOTE})"
        elif s.inner_index is None:
            inner = "none yet"
        else:
            inner = f"split {s.inner_index}: {s.inner_cases[0]} train / {s.inner_cases[1]} val"
        body.append([s.setup.label, s.scored.describe(), inner, _scores_text(s),
                     "none" if s.learning_rate is None else f"{s.learning_rate:g}"])
    caption = ("Learning-rate selection: for each scored fold, an inner split of that fold's training cases only "
               "(about a third of them validate), one run per grid value with the setup's own trainer and budget, "
               "and the value with the best foreground mean Dice (%) on the inner validation cases (equal Dice: the "
               "smaller value). The scored fold is then trained on all its training cases at that value; its "
               "validation cases play no part in the choice.")
    return caption + "\n\n" + _markdown(["Setup", "Scored fold", "Inner split", "Inner Dice by learning rate",
                                         "Chosen"], body) + _notes(problems) + "\n"


def write_selection_csv(selections: Sequence[Selection], path: Path) -> None:
    """One line per setup and scored fold; Dice as fractions."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setup", "trainer", "scored_fold_index", "fold", "num_labeled", "selected_on_fold",
                         "inner_fold_index", "inner_train_cases", "inner_val_cases", "inner_dice_per_lr", "chosen_lr"])
        for s in selections:
            writer.writerow([s.setup.name, s.setup.trainer, s.scored.index, s.scored.fold,
                             "" if s.scored.num_labeled is None else s.scored.num_labeled, s.made_on.index,
                             "" if s.inner_index is None else s.inner_index,
                             "" if s.inner_cases is None else s.inner_cases[0],
                             "" if s.inner_cases is None else s.inner_cases[1],
                             " ".join(f"{lr!r}:{'' if d is None else repr(d)}" for lr, d in s.scores.items()),
                             "" if s.learning_rate is None else repr(s.learning_rate)])
