"""The benchmark from request to report: :func:`run_benchmark`.

1. Resolve: the dataset, nnU-Net's folders, the arms (the FPN's setups on the plans of
   ``plans``/``configuration``, nnU-Net's U-Net's on ``unet_plans``/``unet_configuration``, each
   with its results folder, weights and learning-rate grid) and the pre-training checkpoints.
2. With ``run``: write ``splits_final.json`` (the regular folds, the label-efficiency splits, the
   inner splits of ``select_lr``), then train what is missing — with ``select_lr`` the inner runs,
   the choice and the final runs at the chosen rates (:mod:`.lr_selection`), otherwise every
   scored fold at its budget's rate; every scored fold ``repeats`` times (:mod:`.repeats`); then
   the pre-training curve's folds (:mod:`.pretraining_curve`). A fold that fails is reported and
   the others still run.
3. Collect and write, into the output folder: the pre-training curve, Table 1, the
   label-efficiency table and the learning-rate choices, each as Markdown and CSV, and the figures.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from vox2vec_nnunet.benchmark.collect import Problem, foreground_labels
from vox2vec_nnunet.benchmark.figures import (ERROR_BARS, plot_dice_vs_labeled, plot_dice_vs_parameters,
                                              plot_dice_vs_pretraining)
from vox2vec_nnunet.benchmark.layout import CHECKPOINT_FINAL, ResultsLayout, logged_training_seconds
from vox2vec_nnunet.benchmark.lr_selection import (SELECTION_SUBDIR, ScoredFold, Selection, inner_jobs,
                                                   inner_layout, mark_selected, scored_folds, select, selected_layout,
                                                   selection_markdown, write_selection_csv)
from vox2vec_nnunet.benchmark.pretraining_curve import (CurvePoint, PretrainingCheckpoint, checkpoint_results_root,
                                                        curve_markdown, find_checkpoints, write_curve_csv)
from vox2vec_nnunet.benchmark.repeats import collect_runs, repeat_layout
from vox2vec_nnunet.benchmark.request import BenchmarkReport, BenchmarkRequest
from vox2vec_nnunet.benchmark.runner import (Action, Job, Outcome, check_weights, decide_action, find_nnunet_train,
                                             run_jobs)
from vox2vec_nnunet.benchmark.splits import (SPLITS_FILE, SplitsState, ensure_inner_splits,
                                             ensure_label_efficiency_splits, ensure_regular_splits, read_splits,
                                             training_identifiers)
from vox2vec_nnunet.benchmark.table import (SELECTED, Row, dice_table_markdown, label_efficiency_markdown, summarise,
                                            write_dice_table_csv, write_label_efficiency_csv)
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.nnunet_env import NNUNET_PATH_VARIABLES, dataset_name, require_path_variable, trainers_dir
from vox2vec_nnunet.training.setups import Setup, resolve_setups

OUTPUT_SUBDIR = "vox2vec_benchmark"
"""Folder of ``$nnUNet_results/DatasetXXX`` the tables and figures go to by default."""


@dataclass(frozen=True)
class Arm:
    """The setups that train one network: the FPN (plans of ``-p``/``-c``) or nnU-Net's U-Net
    (``--unet_plans``/``--unet_configuration``), with the results folder, weights and
    learning-rate grid they use."""

    setups: tuple[Setup, ...]
    layout: ResultsLayout
    pretrained_weights: Path | None
    weights_option: str
    lr_grid: tuple[float, ...]

    @property
    def plans(self) -> str:
        return f"{self.layout.plans}/{self.layout.configuration}"

    def scored_layout(self, select_lr: bool) -> ResultsLayout:
        """Where the scored folds are: the final runs' root with ``select_lr``, else the regular folder."""
        return selected_layout(self.layout) if select_lr else self.layout


@dataclass(frozen=True)
class _Context:
    """A request resolved against the environment."""

    request: BenchmarkRequest
    dataset: str
    results_root: Path
    preprocessed_root: Path
    raw_root: Path
    arms: tuple[Arm, ...]
    checkpoints: tuple[PretrainingCheckpoint, ...]

    @property
    def preprocessed_dir(self) -> Path:
        return self.preprocessed_root / self.dataset

    @property
    def output(self) -> Path:
        return self.request.output or self.results_root / self.dataset / OUTPUT_SUBDIR

    @property
    def plans(self) -> str:
        return " and ".join(arm.plans for arm in self.arms)

    @property
    def curve_setups(self) -> tuple[Setup, ...]:
        """The FPN setups trained once per pre-training checkpoint."""
        return tuple(s for s in self.arms[0].setups if s.needs_weights) if self.checkpoints else ()

    def folds_text(self) -> str:
        return f"folds {self.request.scored_fold_ids} of {self.request.folds}"


def run_benchmark(request: BenchmarkRequest, out: TextIO | None = None) -> BenchmarkReport:
    """Train what ``request`` asks for (with ``request.run``), collect, write the tables and
    figures, and return what was found; progress goes to ``out`` (default: standard output).
    Raises :class:`~vox2vec_nnunet.errors.Vox2VecError` (or ``ValueError`` for bad splits,
    weights or labels) for what cannot be run at all."""
    out = out or sys.stdout
    request.check()
    context = _resolve(request, out)
    report = BenchmarkReport(context.dataset, context.output)
    state: SplitsState | None = None
    if request.run:
        state, report.failures = _train(context, out)
    elif request.labeled or request.select_lr:
        state = read_splits(context.preprocessed_dir)
    _collect_and_write(context, state, report)
    return report


def _resolve(request: BenchmarkRequest, out: TextIO) -> _Context:
    setups = resolve_setups(request.setups, request.trainer_variant)
    checkpoints: list[PretrainingCheckpoint] = []
    if request.pretraining_curve:
        if not any(s.needs_weights and not s.own_unet for s in setups):
            raise Vox2VecError(f"--pretraining_curve: none of the setups {', '.join(s.name for s in setups)} "
                               f"starts from pre-trained FPN weights (e.g. linear_probe)")
        if any(s.needs_weights and s.own_unet for s in setups):
            raise Vox2VecError("--pretraining_curve draws the FPN setups; run unet_finetune in a benchmark of "
                               "its own with --unet_pretrained_weights")
        checkpoints, notes = find_checkpoints(list(request.pretraining_curve))
        out.write("pre-training checkpoints:\n" + "\n".join(
            f"  {c.trainer}, {c.describe()}: {c.path}" for c in checkpoints)
            + "".join(f"\n  note: {n}" for n in notes) + "\n")
    results_root, preprocessed_root, raw_root = (
        require_path_variable(v) for v in ("nnUNet_results", "nnUNet_preprocessed", "nnUNet_raw"))
    if request.run and not os.environ.get("nnUNet_extTrainer"):
        raise Vox2VecError("the environment variable nnUNet_extTrainer is not set, so nnUNetv2_train "
                           f"cannot find the vox2vec trainers. Fix: export nnUNet_extTrainer={trainers_dir()}")
    dataset = _dataset_name(request.dataset)
    return _Context(request, dataset, results_root, preprocessed_root, raw_root,
                    _arms(request, setups, results_root / dataset), tuple(checkpoints))


def _arms(request: BenchmarkRequest, setups: Sequence[Setup], dataset_results_dir: Path) -> tuple[Arm, ...]:
    """The FPN arm and the U-Net arm, each only when one of ``setups`` belongs to it."""
    fpn = tuple(s for s in setups if not s.own_unet)
    unet = tuple(s for s in setups if s.own_unet)
    if unet and not request.unet_plans:
        raise Vox2VecError(f"the setups {', '.join(s.name for s in unet)} train nnU-Net's own U-Net: pass "
                           f"--unet_plans (e.g. nnUNetResEncUNetMPlans) and, if not 3d_fullres, --unet_configuration")
    arms = []
    if fpn:
        arms.append(Arm(fpn, ResultsLayout(dataset_results_dir, request.plans, request.configuration),
                        request.pretrained_weights, "--pretrained_weights", tuple(sorted(request.lr_grid))))
    if unet:
        arms.append(Arm(unet, ResultsLayout(dataset_results_dir, request.unet_plans, request.unet_configuration),
                        request.unet_pretrained_weights, "--unet_pretrained_weights",
                        tuple(sorted(request.unet_lr_grid))))
    return tuple(arms)


def _dataset_name(dataset: str) -> str:
    """``DatasetXXX_Name`` for an id or name (nnU-Net's lookup); it must exist in one of
    nnU-Net's folders (a name is not looked up by nnU-Net itself)."""
    name = dataset_name(dataset)
    roots = [require_path_variable(v) for v in NNUNET_PATH_VARIABLES]
    if not any((root / name).is_dir() for root in roots):
        raise Vox2VecError(f"unknown dataset {dataset!r}: no folder {name} in {', '.join(map(str, roots))}")
    return name


# --- training -------------------------------------------------------------------------------


def _results_env(layout: ResultsLayout) -> dict[str, str]:
    """``nnUNet_results`` for ``nnUNetv2_train`` runs whose folds ``layout`` holds."""
    return {"nnUNet_results": str(layout.dataset_results_dir.parent)}


def _write_splits(context: _Context) -> SplitsState:
    request, folder = context.request, context.preprocessed_dir
    if not folder.is_dir():
        raise Vox2VecError(f"{folder} does not exist: plan and preprocess {context.dataset} first")
    first = context.arms[0].layout
    state = ensure_regular_splits(
        folder, request.folds, overwrite=request.overwrite_splits,
        identifiers=lambda: training_identifiers(folder, first.plans, first.configuration,
                                                 context.raw_root / context.dataset))
    if request.labeled:
        state = ensure_label_efficiency_splits(folder, request.labeled_counts)
    if request.select_lr:
        scored = scored_folds(state, request.scored_fold_ids, request.labeled_counts)
        state = ensure_inner_splits(folder, [(s.fold, s.num_labeled) for s in scored if s.has_inner_split])
    return state


def _train(context: _Context, out: TextIO) -> tuple[SplitsState, list[Outcome]]:
    """``run``: write the splits, then train every fold that is not finished (see the module
    docstring); the failed folds."""
    request = context.request
    curve = context.curve_setups
    for arm in context.arms:
        check_weights([s for s in arm.setups if s not in curve], arm.pretrained_weights, arm.weights_option)
    executable = find_nnunet_train()
    state = _write_splits(context)
    out.write(f"splits: {context.preprocessed_dir / SPLITS_FILE} ({state.num_regular_folds} regular folds, "
              f"{len(state.labeled)} label-efficiency splits, {len(state.inner)} inner splits)\n")
    device = request.device
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out.write(f"device: {device}\n")
    scored = scored_folds(state, request.scored_fold_ids, request.labeled_counts)
    outcomes: list[Outcome] = []
    selections: list[Selection] = []

    def run(jobs: list[Job], layout: ResultsLayout, weights: Path | None) -> None:
        outcomes.extend(run_jobs(jobs, context.dataset, layout, weights, device, executable, out,
                                 env=_results_env(layout)))

    if request.select_lr:
        out.write(_cost(context, state, scored))
        out.flush()
        for arm in context.arms:
            for lr in arm.lr_grid:
                run([j for s in arm.setups for j in inner_jobs(s, scored, state, lr)], inner_layout(arm.layout, lr),
                    arm.pretrained_weights)
        selections, _ = _select_all(context, state, scored)  # the problems are reported with the tables
    for number in range(1, request.repeats + 1):  # every fold once before any fold twice
        for arm in context.arms:
            jobs = _scored_jobs(context, arm, scored, selections, number, out)
            run(jobs, repeat_layout(arm.scored_layout(request.select_lr), number), arm.pretrained_weights)
    fpn = context.arms[0]
    for checkpoint in context.checkpoints:
        root = checkpoint_results_root(fpn.layout.dataset_results_dir, checkpoint)
        run([Job(s, f, f"fold {f}, {checkpoint.describe()}") for s in curve for f in request.scored_fold_ids],
            ResultsLayout(root / context.dataset, fpn.layout.plans, fpn.layout.configuration), checkpoint.path)
    return state, [o for o in outcomes if o.error is not None]


def _scored_jobs(context: _Context, arm: Arm, scored: Sequence[ScoredFold], selections: Sequence[Selection],
                 number: int, out: TextIO) -> list[Job]:
    """Run ``number`` of every scored fold of ``arm``'s setups (not the pre-training curve's): the
    regular folds of every setup first, then the label-efficiency splits; with ``select_lr`` each
    at its chosen rate, a fold without a choice left out (and said so)."""
    request = context.request
    of_run = "" if request.repeats == 1 else f", run {number}"
    chosen = {(s.setup.name, s.scored.index): s.learning_rate for s in selections}
    jobs = []
    for regular in (True, False):
        for setup in (s for s in arm.setups if s not in context.curve_setups):
            for s in (s for s in scored if (s.num_labeled is None) == regular):
                lr = chosen.get((setup.name, s.index))
                if request.select_lr and lr is None:
                    out.write(f"[{setup.name} {s.describe()}{of_run}] not trained: no learning rate chosen (an inner "
                              f"run is missing or failed; see lr_selection.md)\n")
                    continue
                jobs.append(Job(setup, s.index, s.describe() + of_run, lr))
    return jobs


def _select_all(context: _Context, state: SplitsState | None, scored: Sequence[ScoredFold]
                ) -> tuple[list[Selection], list[Problem]]:
    """Every setup's choice on every scored fold (not the pre-training curve's setups)."""
    selections: list[Selection] = []
    problems: list[Problem] = []
    for arm in context.arms:
        for setup in (s for s in arm.setups if s not in context.curve_setups):
            found, p = select(arm.layout, setup, scored, state, arm.lr_grid)
            selections += found
            problems += p
    return selections, problems


def _cost(context: _Context, state: SplitsState, scored: Sequence[ScoredFold]) -> str:
    """The runs ``select_lr`` adds, how many are still to train, and an estimate of their training
    time from the epoch times logged by finished runs of the same trainers."""
    request = context.request
    inner: list[tuple[ResultsLayout, Job]] = []
    final: list[tuple[ResultsLayout, Job]] = []
    for arm in context.arms:
        for lr in arm.lr_grid:
            inner += [(inner_layout(arm.layout, lr), j) for s in arm.setups for j in inner_jobs(s, scored, state, lr)]
        for number in range(1, request.repeats + 1):
            layout = repeat_layout(arm.scored_layout(True), number)
            final += [(layout, Job(setup, s.index, s.describe())) for setup in arm.setups for s in scored]
    to_train = [(layout, job) for layout, job in inner + final
                if decide_action(layout.fold_dir(job.setup.trainer, job.fold)) is not Action.SKIP]
    seconds: dict[str, list[float]] = {}
    searched = {layout for layout, _ in inner + final} | {arm.layout for arm in context.arms}
    for layout in searched:
        for trainer in {job.setup.trainer for _, job in inner + final}:
            for fold_dir in layout.trainer_dir(trainer).glob("fold_*"):
                logged = logged_training_seconds(fold_dir) if (fold_dir / CHECKPOINT_FINAL).is_file() else None
                if logged is not None:
                    seconds.setdefault(trainer, []).append(logged)
    known = [sum(seconds[j.setup.trainer]) / len(seconds[j.setup.trainer]) for _, j in to_train
             if j.setup.trainer in seconds]

    def count(runs: list[tuple[ResultsLayout, Job]]) -> str:
        pending = sum(1 for run in runs if run in to_train)
        return f"{len(runs)} ({len(runs) - pending} finished, {pending} to train)"

    grids = "; ".join(f"{arm.plans}: {' '.join(f'{lr:g}' for lr in arm.lr_grid)}" for arm in context.arms)
    root = context.results_root / context.dataset / SELECTION_SUBDIR
    lines = [f"learning-rate selection, grid {grids}",
             f"  inner runs: {count(inner)} in {root}/lr<value>",
             f"  final runs: {count(final)} in {selected_layout(context.arms[0].layout).dataset_results_dir.parent}"
             + (f" (runs 2-{request.repeats} under its vox2vec_repeats)" if request.repeats > 1 else "")]
    if to_train:
        if not known:
            estimate = "no estimate: no finished run of these trainers has logged epoch times"
        else:
            of = "" if len(known) == len(to_train) else f" for the {len(known)} whose trainer has finished runs"
            estimate = (f"about {sum(known) / 60:.1f} min{of} (mean logged epoch times of finished runs of the same "
                        f"trainer; validation not included)")
        lines.append(f"  training time of the {len(to_train)} runs to train: {estimate}")
    return "\n".join(lines) + "\n"


# --- collecting and writing -----------------------------------------------------------------


def _labels(context: _Context) -> dict[str, str]:
    candidates = [layout.trainer_dir(s.trainer) / "dataset.json" for arm in context.arms
                  for layout in dict.fromkeys((arm.layout, arm.scored_layout(context.request.select_lr)))
                  for s in arm.setups]
    candidates += [root / context.dataset / "dataset.json" for root in (context.preprocessed_root, context.raw_root)]
    for path in candidates:
        if path.is_file():
            try:
                return foreground_labels(json.loads(path.read_text()), path)
            except json.JSONDecodeError as e:
                raise Vox2VecError(f"{path} is not valid JSON: {e}") from e
    raise Vox2VecError(f"no dataset.json for {context.dataset} (looked at "
                       f"{', '.join(map(str, candidates))}); label names come from it")


def _collect_rows(layout: ResultsLayout, setups: Sequence[Setup], folds: Sequence[int],
                  labels: dict[str, str], repeats: int = 1) -> tuple[list[Row], list[Problem]]:
    rows, problems = [], []
    for setup in setups:
        found, p = collect_runs(layout, setup, folds, labels, repeats)
        problems += p
        if found:
            row, p = summarise(setup, found)
            rows.append(row)
            problems += p
        else:
            problems.append(Problem(setup.name, None, "no finished folds, left out of the table"))
    return rows, problems


def _collect_labeled(layout: ResultsLayout, setups: Sequence[Setup], folds: Sequence[int],
                     labeled_counts: Sequence[int], state: SplitsState | None, labels: dict[str, str],
                     repeats: int = 1) -> tuple[list[tuple[int, Row]], list[Problem]]:
    rows: list[tuple[int, Row]] = []
    problems: list[Problem] = []
    indices = sorted(s.fold_index for s in (state.labeled if state is not None else [])
                     if s.num_labeled in labeled_counts and s.fold in folds)
    for setup in setups:
        if not any(layout.fold_dir(setup.trainer, i).is_dir() for i in indices):
            problems.append(Problem(setup.name, None, "no label-efficiency fold trained yet "
                                    f"(fold indices {indices} in splits_final.json)",
                                    layout.trainer_dir(setup.trainer)))
            continue
        for k in labeled_counts:
            found = []
            for f in folds:
                try:
                    index = state.fold_index(k, f) if state is not None else None
                except KeyError:
                    index = None
                if index is None:
                    problems.append(Problem(setup.name, f, f"no split with {k} labeled cases yet "
                                            f"(created by --run --labeled {k})"))
                    continue
                fold_found, p = collect_runs(layout, setup, [index], labels, repeats)
                found += fold_found
                problems += [Problem(q.setup, q.fold, f"{k} labeled, regular fold {f}: {q.message}",
                                     q.path) for q in p]
            if found:
                row, p = summarise(setup, found)
                rows.append((k, row))
                problems += p
    return rows, problems


def _collect_curve(layout: ResultsLayout, setups: Sequence[Setup], folds: Sequence[int],
                   checkpoints: Sequence[PretrainingCheckpoint], labels: dict[str, str]
                   ) -> tuple[list[CurvePoint], list[Problem]]:
    """The random-FPN baselines (0 iterations, regular results folder), then each setup that
    needs weights at each checkpoint (its own results root)."""
    points: list[CurvePoint] = []
    problems: list[Problem] = []
    rows, p = _collect_rows(layout, [s for s in setups if s.random_baseline], folds, labels)
    points += [CurvePoint(None, row) for row in rows]
    problems += p
    for setup in (s for s in setups if s.needs_weights):
        for checkpoint in checkpoints:
            root = checkpoint_results_root(layout.dataset_results_dir, checkpoint)
            at = ResultsLayout(root / layout.dataset_results_dir.name, layout.plans, layout.configuration)
            rows, p = _collect_rows(at, [setup], folds, labels)
            points += [CurvePoint(checkpoint, row) for row in rows]
            problems += [Problem(q.setup, q.fold, f"{checkpoint.describe()}: {q.message}", q.path) for q in p]
    return points, problems


def _marked(rows: list[Row], selections: Sequence[Selection]) -> tuple[list[Row], list[Problem]]:
    problems: list[Problem] = []
    marked = []
    for row in rows:
        row, p = mark_selected(row, selections)
        marked.append(row)
        problems += p
    return marked, problems


def _subtitle(dataset: str, plans: str, rows: Sequence[Row]) -> str:
    budgets = {r.budget() for r in rows}
    budget = budgets.pop() if len(budgets) == 1 else "differs between setups"
    modes = {r.learning_rate_mode() for r in rows}
    lr = "learning rates selected per fold" if modes == {SELECTED} else "learning rates: see the table"
    return (f"{dataset}, {plans}, budget {budget} (iterations × batch), {lr}\nhollow markers: backbone not "
            f"pre-trained (from scratch, random FPN); {ERROR_BARS}")


def _settings(rows: Sequence[Row], context: _Context) -> list[str]:
    lines = [f"  {r.setup.label}: budget {r.budget()} (iterations × batch size), learning rate {r.learning_rate()}, "
             f"backbone {r.backbone_source}, trainer {r.setup.trainer}" for r in rows]
    random = [r for r in rows if r.setup.random_baseline]
    if random:
        lines += [f"  random baseline: {r.setup.label} = {r.setup.trainer}, a frozen randomly "
                  f"initialised FPN (recorded backbone source: {r.backbone_source})" for r in random]
    else:
        lines.append("  random baseline: none in this table")
    if context.request.select_lr:
        grids = "; ".join(f"{arm.plans} {' '.join(f'{lr:g}' for lr in arm.lr_grid)}" for arm in context.arms)
        lines.append(f"  learning rates selected per fold from {grids}: best foreground mean Dice on an inner split "
                     f"of the fold's training cases (a third validate), equal Dice to the smaller value")
    return lines


def _where(context: _Context) -> list[str]:
    """Where the final runs at the selected rates are, and how to predict with them."""
    lines = []
    for arm in context.arms:
        layout = arm.scored_layout(True)
        lines.append(f"final runs at the selected learning rates ({arm.plans}): {layout.dataset_results_dir}; "
                     f"predict with them:")
        folds = " ".join(map(str, context.request.scored_fold_ids))
        lines += [f"  nnUNet_results={layout.dataset_results_dir.parent} nnUNetv2_predict -d {context.dataset} "
                  f"-c {layout.configuration} -p {layout.plans} -tr {s.trainer} -f {folds} -i INPUT -o OUTPUT"
                  for s in arm.setups]
    return lines


def _collect_and_write(context: _Context, state: SplitsState | None, report: BenchmarkReport) -> None:
    request, output, dataset = context.request, context.output, context.dataset
    labels = _labels(context)
    output.mkdir(parents=True, exist_ok=True)
    fold_ids = request.scored_fold_ids
    arms = list(context.arms)

    if context.checkpoints:
        fpn = arms[0]
        points, problems = _collect_curve(fpn.layout, fpn.setups, fold_ids, context.checkpoints, labels)
        text = curve_markdown(points, list(labels), problems)
        paths = [output / "pretraining_curve.md", output / "pretraining_curve.csv", output / "dice_vs_pretraining.png"]
        paths[0].write_text(text)
        write_curve_csv(points, list(labels), paths[1])
        plot_dice_vs_pretraining(points, paths[2], _subtitle(dataset, fpn.plans, [p.row for p in points]))
        report.curve_points, report.written = points, report.written + paths
        report.problems += problems
        report.tables.append((f"{dataset}, {fpn.plans}, {context.folds_text()}, against pre-training iterations",
                              text))
        # the regular table: the others
        arms = [replace(arm, setups=tuple(s for s in arm.setups if not s.needs_weights)) for arm in arms]

    selections, selection_problems = [], []
    if request.select_lr:
        scored = scored_folds(state, fold_ids, request.labeled_counts)
        selections, selection_problems = _select_all(context, state, scored)

    if any(arm.setups for arm in arms):
        rows: list[Row] = []
        problems: list[Problem] = []
        for arm in arms:
            found, p = _collect_rows(arm.scored_layout(request.select_lr), arm.setups, fold_ids, labels,
                                     request.repeats)
            rows += found
            problems += p
        if request.select_lr:
            rows, p = _marked(rows, selections)
            problems += p
        paths = [output / "dice_table.md", output / "dice_table.csv"]
        if rows:
            paths.append(output / "dice_vs_parameters.png")
            problems += plot_dice_vs_parameters(rows, paths[2], _subtitle(dataset, context.plans, rows))
        text = dice_table_markdown(rows, list(labels), problems)
        paths[0].write_text(text)
        write_dice_table_csv(rows, list(labels), paths[1])
        report.rows, report.written = rows, report.written + paths
        report.problems += problems
        report.tables.append((f"{dataset}, {context.plans}, {context.folds_text()}", text))

    if request.labeled:
        labeled_rows: list[tuple[int, Row]] = []
        problems = []
        for arm in arms:
            found, p = _collect_labeled(arm.scored_layout(request.select_lr), arm.setups, fold_ids,
                                        request.labeled_counts, state, labels, request.repeats)
            labeled_rows += found
            problems += p
        if request.select_lr:
            marked, p = _marked([r for _, r in labeled_rows], selections)
            labeled_rows = [(k, r) for (k, _), r in zip(labeled_rows, marked)]
            problems += p
        all_cases = [len(state.splits[f]["train"]) for f in fold_ids] if state is not None else []
        text = label_efficiency_markdown(labeled_rows, problems, all_labeled=report.rows, all_cases=all_cases)
        paths = [output / "label_efficiency.md", output / "label_efficiency.csv"]
        paths[0].write_text(text)
        write_label_efficiency_csv(labeled_rows, paths[1])
        if labeled_rows:
            paths.append(output / "dice_vs_labeled.png")
            plot_dice_vs_labeled(labeled_rows, paths[2], _subtitle(dataset, context.plans,
                                                                    [r for _, r in labeled_rows]),
                                 all_labeled=report.rows, all_cases=all_cases)
        report.labeled_rows, report.written = labeled_rows, report.written + paths
        report.problems += problems
        report.tables.append((f"{dataset}, {context.plans}, {context.folds_text()}, few labeled cases", text))

    if request.select_lr:
        text = selection_markdown(selections, selection_problems)
        paths = [output / "lr_selection.md", output / "lr_selection.csv"]
        paths[0].write_text(text)
        write_selection_csv(selections, paths[1])
        report.selections, report.written = selections, report.written + paths
        report.problems += selection_problems
        report.tables.append((f"{dataset}, learning-rate selection", text))
        report.where = _where(context)

    shown = {r.setup.name: r for r in [*(p.row for p in report.curve_points), *(r for _, r in report.labeled_rows),
                                       *report.rows]}
    report.settings = _settings(list(shown.values()), context)
