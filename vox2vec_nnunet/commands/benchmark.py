"""``vox2vec_nnunet_benchmark``: the paper's Table 1/2 and Fig. 2 from nnU-Net cross-validation.

Collects ``fold_k/validation/summary.json`` of every evaluation setup (see
``vox2vec_nnunet.training.setups``) and writes, into ``-o`` (default
``$nnUNet_results/DatasetXXX/vox2vec_benchmark/``):

* ``dice_table.md`` / ``dice_table.csv``: Dice per label and mean over labels, mean ± sample
  std over folds, with trainable parameters, backbone source and training budget (Table 1);
* ``dice_vs_parameters.png``: mean Dice against trainable parameters, log x (Fig. 2);
* with ``--labeled 1 2 4 ...``: ``label_efficiency.md`` / ``.csv`` and ``dice_vs_labeled.png``,
  Dice when training on k labeled cases of each fold (the paper's stated future work), the
  table's last column and the figure's last point the regular folds' result (all labeled
  training cases);
* with ``--pretraining_curve CKPT|FOLDER ...``: ``pretraining_curve.md`` / ``.csv`` and
  ``dice_vs_pretraining.png``, the setups that start from pre-trained weights trained from
  each checkpoint (in a results root of its own), against pre-training iterations, with the
  random-FPN baselines at 0 iterations and the spread over pre-training seeds
  (``vox2vec_nnunet.benchmark.pretraining_curve``); the table and figure above then hold
  the setups without weights.

With ``--run`` the missing folds are first trained by ``nnUNetv2_train`` (resuming unfinished
ones), after writing ``splits_final.json`` for ``--folds K`` (the paper: 5 folds on BTCV, 3 on
MSD) and the label-efficiency splits. ``--repeats R`` trains and collects every fold R times
(nnU-Net's training is not deterministic): each fold counts as the mean over its runs, and the
tables add the runs per fold and the run-to-run std (``vox2vec_nnunet.benchmark.repeats``).

The FPN setups train on the plans of ``-p``/``-c`` (``vox2vec_nnunet_plan``'s); the ``unet_*``
setups train nnU-Net's own U-Net of ``--unet_plans``/``--unet_configuration`` (e.g.
``nnUNetResEncUNetMPlans``/``3d_fullres``) from ``--unet_pretrained_weights``
(``Vox2VecPretrainTrainer_UNet``'s checkpoint). Both share the dataset's ``splits_final.json``,
so every setup sees the same folds and validation cases, and all land in one table and figure.
Exit code 0 when everything asked for ran, 1 when a fold
failed or nothing could be collected, 2 for bad input or environment.

Example::

    vox2vec_nnunet_benchmark -d 17 --folds 5 --run -device cuda \\
        --pretrained_weights vox2vec_fpn.pth --setups scratch linear_probe nonlinear_probe
    vox2vec_nnunet_benchmark -d 17 --folds 5 --run --setups linear_probe linear_probe_random_bn \\
        --pretraining_curve .../Vox2VecPretrainTrainer__Vox2VecPlans__3d_vox2vec_pretrain/fold_all
    vox2vec_nnunet_benchmark -d 17 --folds 5 --run --pretrained_weights vox2vec_fpn.pth \\
        --setups scratch finetune unet_scratch unet_finetune --unet_plans nnUNetResEncUNetMPlans \\
        --unet_pretrained_weights vox2vec_resenc_m.pth
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vox2vec_nnunet.benchmark.collect import FoldResult, Problem, foreground_labels
from vox2vec_nnunet.benchmark.figures import (plot_dice_vs_labeled, plot_dice_vs_parameters,
                                              plot_dice_vs_pretraining)
from vox2vec_nnunet.benchmark.layout import ResultsLayout
from vox2vec_nnunet.benchmark.pretraining_curve import (CurvePoint, PretrainingCheckpoint, curve_markdown,
                                                        checkpoint_results_root, find_checkpoints, write_curve_csv)
from vox2vec_nnunet.benchmark.repeats import REPEATS_SUBDIR, collect_runs, repeat_layout, repeat_results_root
from vox2vec_nnunet.benchmark.runner import (Job, Outcome, check_weights, find_nnunet_train,
                                             run_jobs)
from vox2vec_nnunet.training.setups import SETUPS, Setup, resolve_setups
from vox2vec_nnunet.benchmark.splits import (SPLITS_FILE, SplitsState,
                                             ensure_label_efficiency_splits,
                                             ensure_regular_splits, read_splits,
                                             training_identifiers)
from vox2vec_nnunet.benchmark.table import (Row, dice_table_markdown, label_efficiency_markdown,
                                            summarise, write_dice_table_csv,
                                            write_label_efficiency_csv)
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.nnunet_env import (NNUNET_PATH_VARIABLES, dataset_name, require_path_variable,
                                       trainers_dir)

OUTPUT_SUBDIR = "vox2vec_benchmark"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_benchmark",
        description="Tables (Dice mean ± std over folds) and figures (Dice vs trainable "
                    "parameters, vs labeled cases) of the vox2vec evaluation setups from nnU-Net "
                    "cross-validation folds; --run trains the missing folds first.")
    p.add_argument("-d", dest="dataset", required=True, help="dataset id or DatasetXXX_Name")
    p.add_argument("-p", dest="plans", default="Vox2VecPlans", help="plans identifier of the FPN setups")
    p.add_argument("-c", dest="configuration", default="3d_vox2vec", help="configuration of the FPN setups")
    p.add_argument("--unet_plans", metavar="PLANS",
                   help="nnU-Net plans identifier of the unet_* setups (e.g. nnUNetResEncUNetMPlans)")
    p.add_argument("--unet_configuration", default="3d_fullres", metavar="CONFIG",
                   help="configuration of the unet_* setups (default: %(default)s)")
    p.add_argument("--setups", nargs="+", default=[n for n, s in SETUPS.items() if not s.own_unet],
                   help=f"evaluation setups (default: all but unet_*, which need --unet_plans): "
                        f"{', '.join(SETUPS)}")
    p.add_argument("--trainer_variant", metavar="SUFFIX",
                   help="use the trainers' budget variants NAME_SUFFIX (e.g. Demo, DemoLong; default: the "
                        "paper's budget)")
    p.add_argument("--folds", type=int, default=5,
                   help="number of cross-validation folds K (default 5; the paper uses 3 on MSD)")
    p.add_argument("--fold_ids", nargs="+", type=int,
                   help="only these of the K folds (default: all)")
    p.add_argument("--pretrained_weights", type=Path,
                   help="pre-trained FPN checkpoint for the FPN setups that need it (with --run)")
    p.add_argument("--unet_pretrained_weights", type=Path, metavar="CKPT",
                   help="Vox2VecPretrainTrainer_UNet checkpoint for unet_finetune (with --run)")
    p.add_argument("--run", action="store_true",
                   help="train missing folds with nnUNetv2_train before collecting")
    p.add_argument("-device", choices=("cpu", "cuda", "mps"),
                   help="device for nnUNetv2_train (default: cuda if available, else cpu)")
    p.add_argument("--labeled", nargs="+", type=int, metavar="K",
                   help="label-efficiency mode: also train/collect on K labeled cases per fold")
    p.add_argument("--pretraining_curve", nargs="+", type=Path, metavar="CKPT",
                   help="checkpoints of vox2vec pre-training runs (files, snapshots folders or fold_all folders): "
                        "train the setups that need weights from each, and draw Dice against pre-training "
                        "iterations (instead of --pretrained_weights)")
    p.add_argument("--repeats", type=int, default=1, metavar="R",
                   help="train (with --run) and collect every fold R times, since nnU-Net's training is not "
                        "deterministic: run 1 in the regular results folder, run r in "
                        f"$nnUNet_results/DatasetXXX/{REPEATS_SUBDIR}/run<r>; a fold counts as the mean over "
                        "its runs and the table adds the run-to-run std (default: %(default)s)")
    p.add_argument("--overwrite_splits", action="store_true",
                   help="with --run: replace a splits_final.json that has another number of folds")
    p.add_argument("-o", dest="output", type=Path,
                   help="output folder (default $nnUNet_results/DatasetXXX/vox2vec_benchmark)")
    return p


@dataclass(frozen=True)
class Arm:
    """The setups that train one network: the FPN (plans of ``-p``/``-c``) or nnU-Net's U-Net
    (``--unet_plans``/``--unet_configuration``), with the results folder and weights they use."""

    setups: tuple[Setup, ...]
    layout: ResultsLayout
    pretrained_weights: Path | None
    weights_option: str

    @property
    def plans(self) -> str:
        return f"{self.layout.plans}/{self.layout.configuration}"


def _arms(args: argparse.Namespace, setups: Sequence[Setup], dataset_results_dir: Path) -> list[Arm]:
    """The FPN arm and the U-Net arm, each only when one of ``setups`` belongs to it."""
    fpn = tuple(s for s in setups if not s.own_unet)
    unet = tuple(s for s in setups if s.own_unet)
    if unet and not args.unet_plans:
        raise Vox2VecError(f"the setups {', '.join(s.name for s in unet)} train nnU-Net's own U-Net: pass "
                           f"--unet_plans (e.g. nnUNetResEncUNetMPlans) and, if not 3d_fullres, --unet_configuration")
    arms = []
    if fpn:
        arms.append(Arm(fpn, ResultsLayout(dataset_results_dir, args.plans, args.configuration),
                        args.pretrained_weights, "--pretrained_weights"))
    if unet:
        arms.append(Arm(unet, ResultsLayout(dataset_results_dir, args.unet_plans, args.unet_configuration),
                        args.unet_pretrained_weights, "--unet_pretrained_weights"))
    return arms


def _dataset_name(dataset: str) -> str:
    """``DatasetXXX_Name`` for an id or name (nnU-Net's lookup); it must exist in one of
    nnU-Net's folders (a name is not looked up by nnU-Net itself)."""
    name = dataset_name(dataset)
    roots = [require_path_variable(v) for v in NNUNET_PATH_VARIABLES]
    if not any((root / name).is_dir() for root in roots):
        raise Vox2VecError(f"unknown dataset {dataset!r}: no folder {name} in "
                           f"{', '.join(map(str, roots))}")
    return name


def _labels(dataset: str, candidates: Sequence[Path]) -> dict[str, str]:
    for path in candidates:
        if path.is_file():
            try:
                return foreground_labels(json.loads(path.read_text()), path)
            except json.JSONDecodeError as e:
                raise Vox2VecError(f"{path} is not valid JSON: {e}") from e
    raise Vox2VecError(f"no dataset.json for {dataset} (looked at "
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
                     budgets: Sequence[int], state: SplitsState | None, labels: dict[str, str],
                     repeats: int = 1) -> tuple[list[tuple[int, Row]], list[Problem]]:
    rows: list[tuple[int, Row]] = []
    problems: list[Problem] = []
    indices = sorted(s.fold_index for s in (state.labeled if state is not None else [])
                     if s.num_labeled in budgets and s.fold in folds)
    for setup in setups:
        if not any(layout.fold_dir(setup.trainer, i).is_dir() for i in indices):
            problems.append(Problem(setup.name, None, "no label-efficiency fold trained yet "
                                    f"(fold indices {indices} in splits_final.json)",
                                    layout.trainer_dir(setup.trainer)))
            continue
        for k in budgets:
            found: list[FoldResult] = []
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


def _settings(rows: Sequence[Row]) -> list[str]:
    lines = [f"  budget {r.setup.label}: {r.budget()} (iterations × batch size), "
             f"backbone {r.backbone_source}, trainer {r.setup.trainer}" for r in rows]
    random = [r for r in rows if r.setup.random_baseline]
    if random:
        lines += [f"  random baseline: {r.setup.label} = {r.setup.trainer}, a frozen randomly "
                  f"initialised FPN (recorded backbone source: {r.backbone_source})" for r in random]
    else:
        lines.append("  random baseline: none in this table")
    return lines


def _subtitle(dataset: str, plans: str, rows: Sequence[Row]) -> str:
    budgets = {r.budget() for r in rows}
    budget = budgets.pop() if len(budgets) == 1 else "differs between setups"
    return (f"{dataset}, {plans}, budget {budget} "
            f"(iterations × batch)\nhollow markers: backbone not pre-trained (from scratch, "
            f"random FPN); error bars: sample std over folds")


def _run_missing(args: argparse.Namespace, arms: Sequence[Arm], fold_ids: Sequence[int],
                 budgets: Sequence[int], dataset: str, preprocessed_dir: Path, raw_root: Path,
                 checkpoints: Sequence[PretrainingCheckpoint] = ()) -> tuple[SplitsState, list[Outcome]]:
    """``--run``: write the splits, then train every fold that is not finished, arm by arm; with
    ``checkpoints`` the FPN setups that need weights once per checkpoint, in its own results root."""
    curve = [s for s in arms[0].setups if s.needs_weights] if checkpoints else []
    for arm in arms:
        check_weights([s for s in arm.setups if s not in curve], arm.pretrained_weights, arm.weights_option)
    executable = find_nnunet_train()
    if not preprocessed_dir.is_dir():
        raise Vox2VecError(f"{preprocessed_dir} does not exist: plan and preprocess {dataset} first")
    first = arms[0].layout
    state = ensure_regular_splits(
        preprocessed_dir, args.folds, overwrite=args.overwrite_splits,
        identifiers=lambda: training_identifiers(preprocessed_dir, first.plans, first.configuration,
                                                 raw_root / dataset))
    if budgets:
        state = ensure_label_efficiency_splits(preprocessed_dir, budgets)
    print(f"splits: {preprocessed_dir / SPLITS_FILE} ({state.num_regular_folds} regular folds, "
          f"{len(state.labeled)} label-efficiency splits)")
    device = args.device
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {device}")
    outcomes: list[Outcome] = []
    for run in range(1, args.repeats + 1):  # every fold once before any fold twice
        for arm in arms:
            regular = [s for s in arm.setups if s not in curve]
            of_run = "" if args.repeats == 1 else f", run {run}"
            jobs = [Job(s, f, f"fold {f}{of_run}") for s in regular for f in fold_ids]
            for s in regular:
                for k in budgets:
                    for f in fold_ids:
                        index = state.fold_index(k, f)
                        jobs.append(Job(s, index, f"{k} labeled, fold {f} (split {index}){of_run}"))
            root = repeat_results_root(arm.layout.dataset_results_dir, run)
            outcomes += run_jobs(jobs, dataset, repeat_layout(arm.layout, run), arm.pretrained_weights, device,
                                 executable, env={} if root is None else {"nnUNet_results": str(root)})
    layout = arms[0].layout
    for checkpoint in checkpoints:
        root = checkpoint_results_root(layout.dataset_results_dir, checkpoint)
        jobs = [Job(s, f, f"fold {f}, {checkpoint.describe()}") for s in curve for f in fold_ids]
        outcomes += run_jobs(jobs, dataset, ResultsLayout(root / dataset, layout.plans, layout.configuration),
                             checkpoint.path, device, executable, env={"nnUNet_results": str(root)})
    return state, outcomes


def _collect_curve(layout: ResultsLayout, setups: Sequence[Setup], folds: Sequence[int],
                   checkpoints: Sequence[PretrainingCheckpoint], labels: dict[str, str]
                   ) -> tuple[list[CurvePoint], list[Problem]]:
    """The random-FPN baselines (0 iterations, regular results folder), then each setup that
    needs weights at each checkpoint (its own results root)."""
    points: list[CurvePoint] = []
    problems: list[Problem] = []
    baselines = [s for s in setups if s.random_baseline]
    rows, p = _collect_rows(layout, baselines, folds, labels)
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


def _main(args: argparse.Namespace) -> int:
    setups = resolve_setups(args.setups, args.trainer_variant)
    if args.labeled and min(args.labeled) < 1:
        raise Vox2VecError("--labeled: numbers of labeled cases must be >= 1")
    if args.overwrite_splits and not args.run:
        raise Vox2VecError("--overwrite_splits only applies with --run (splits are written there)")
    if args.folds < 2:
        raise Vox2VecError(f"--folds must be at least 2, got {args.folds}")
    if args.repeats < 1:
        raise Vox2VecError(f"--repeats must be at least 1, got {args.repeats}")
    fold_ids = list(dict.fromkeys(args.fold_ids)) if args.fold_ids else list(range(args.folds))
    bad = [f for f in fold_ids if not 0 <= f < args.folds]
    if bad:
        raise Vox2VecError(f"--fold_ids {bad} outside 0..{args.folds - 1} (--folds {args.folds})")
    budgets = sorted(set(args.labeled or []))
    checkpoints: list[PretrainingCheckpoint] = []
    if args.pretraining_curve:
        if args.pretrained_weights is not None or budgets or args.repeats > 1:
            raise Vox2VecError("--pretraining_curve takes the place of --pretrained_weights and does not go with "
                               "--labeled or --repeats")
        if not any(s.needs_weights and not s.own_unet for s in setups):
            raise Vox2VecError(f"--pretraining_curve: none of the setups {', '.join(s.name for s in setups)} "
                               f"starts from pre-trained FPN weights (e.g. linear_probe)")
        if any(s.needs_weights and s.own_unet for s in setups):
            raise Vox2VecError("--pretraining_curve draws the FPN setups; run unet_finetune in a benchmark of "
                               "its own with --unet_pretrained_weights")
        checkpoints, notes = find_checkpoints(args.pretraining_curve)
        print("pre-training checkpoints:\n" + "\n".join(
            f"  {c.trainer}, {c.describe()}: {c.path}" for c in checkpoints) + "".join(f"\n  note: {n}" for n in notes))

    results_root, preprocessed_root, raw_root = (
        require_path_variable(v) for v in ("nnUNet_results", "nnUNet_preprocessed", "nnUNet_raw"))
    if args.run and not os.environ.get("nnUNet_extTrainer"):
        raise Vox2VecError("the environment variable nnUNet_extTrainer is not set, so nnUNetv2_train "
                           f"cannot find the vox2vec trainers. Fix: export "
                           f"nnUNet_extTrainer={trainers_dir()}")
    dataset = _dataset_name(args.dataset)
    arms = _arms(args, setups, results_root / dataset)
    plans = " and ".join(arm.plans for arm in arms)

    failed: list[Outcome] = []
    state: SplitsState | None = None
    if args.run:
        state, outcomes = _run_missing(args, arms, fold_ids, budgets, dataset, preprocessed_root / dataset,
                                       raw_root, checkpoints)
        failed = [o for o in outcomes if o.error is not None]
    elif budgets:
        state = read_splits(preprocessed_root / dataset)

    candidates = [arm.layout.trainer_dir(s.trainer) / "dataset.json" for arm in arms for s in arm.setups]
    candidates += [root / dataset / "dataset.json" for root in (preprocessed_root, raw_root)]
    labels = _labels(dataset, candidates)
    output = args.output or results_root / dataset / OUTPUT_SUBDIR
    output.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    curve_points: list[CurvePoint] = []
    if checkpoints:
        fpn = arms[0]
        curve_points, curve_problems = _collect_curve(fpn.layout, fpn.setups, fold_ids, checkpoints, labels)
        curve_text = curve_markdown(curve_points, list(labels), curve_problems)
        written += [output / "pretraining_curve.md", output / "pretraining_curve.csv",
                    output / "dice_vs_pretraining.png"]
        written[-3].write_text(curve_text)
        write_curve_csv(curve_points, list(labels), written[-2])
        plot_dice_vs_pretraining(curve_points, written[-1], _subtitle(dataset, fpn.plans, [p.row for p in curve_points]))
        print(f"\n{dataset}, {fpn.plans}, folds {fold_ids} of {args.folds}, "
              f"against pre-training iterations\n\n{curve_text}")
        # the regular table: the others
        arms = [replace(arm, setups=tuple(s for s in arm.setups if not s.needs_weights)) for arm in arms]

    rows: list[Row] = []
    if any(arm.setups for arm in arms):
        problems: list[Problem] = []
        for arm in arms:
            arm_rows, arm_problems = _collect_rows(arm.layout, arm.setups, fold_ids, labels, args.repeats)
            rows += arm_rows
            problems += arm_problems
        written += [output / "dice_table.md", output / "dice_table.csv"]
        if rows:
            written.append(output / "dice_vs_parameters.png")
            problems += plot_dice_vs_parameters(rows, written[-1], _subtitle(dataset, plans, rows))
        markdown = dice_table_markdown(rows, list(labels), problems)
        (output / "dice_table.md").write_text(markdown)
        write_dice_table_csv(rows, list(labels), output / "dice_table.csv")
        print(f"\n{dataset}, {plans}, folds {fold_ids} of {args.folds}\n")
        print(markdown)

    labeled_rows: list[tuple[int, Row]] = []
    if budgets:
        labeled_problems: list[Problem] = []
        for arm in arms:
            arm_rows, arm_problems = _collect_labeled(arm.layout, arm.setups, fold_ids, budgets, state, labels,
                                                      args.repeats)
            labeled_rows += arm_rows
            labeled_problems += arm_problems
        all_cases = [len(state.splits[f]["train"]) for f in fold_ids] if state is not None else []
        labeled_markdown = label_efficiency_markdown(labeled_rows, labeled_problems, all_labeled=rows,
                                                     all_cases=all_cases)
        (output / "label_efficiency.md").write_text(labeled_markdown)
        write_label_efficiency_csv(labeled_rows, output / "label_efficiency.csv")
        written += [output / "label_efficiency.md", output / "label_efficiency.csv"]
        if labeled_rows:
            written.append(output / "dice_vs_labeled.png")
            plot_dice_vs_labeled(labeled_rows, written[-1], _subtitle(dataset, plans, [r for _, r in labeled_rows]),
                                 all_labeled=rows, all_cases=all_cases)
        print(labeled_markdown)

    print("settings the figures depend on:")
    shown = {r.setup.name: r for r in [*(p.row for p in curve_points), *(r for _, r in labeled_rows), *rows]}
    print("\n".join(_settings(list(shown.values()))))
    print("written:\n" + "\n".join(f"  {p}" for p in written))
    if failed:
        print(f"\n{len(failed)} fold(s) failed:", file=sys.stderr)
        for o in failed:
            print(f"  {o.job.prefix} {o.action.value}: {o.error}", file=sys.stderr)
        return 1
    if not rows and not labeled_rows and not curve_points:
        print("\nno finished fold of any setup was found; see the notes above", file=sys.stderr)
        return 1
    return 0


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except (ValueError, FileNotFoundError) as e:  # bad splits, weights, labels or setup names
        raise Vox2VecError(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())
