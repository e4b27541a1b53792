"""``vox2vec_nnunet_benchmark``: the paper's Table 1/2 and Fig. 2 from nnU-Net cross-validation.

Collects ``fold_k/validation/summary.json`` of every evaluation setup (see
``vox2vec_nnunet.training.setups``) and writes, into ``-o`` (default
``$nnUNet_results/DatasetXXX/vox2vec_benchmark/``):

* ``dice_table.md`` / ``dice_table.csv``: Dice per label and mean over labels, mean ± sample
  std over folds, with trainable parameters, backbone source, training budget, the learning
  rate of each fold (from its ``vox2vec_run.json``) and the runs per fold (Table 1), and each
  setup's paired difference to from scratch on the same network with its 95% interval (Student t
  over the per-fold differences) and a reading: ahead, level (the interval holds 0) or behind;
* ``dice_vs_parameters.png``: mean Dice against trainable parameters, log x (Fig. 2), error bars
  the 95% interval of the mean over folds, the paired difference in the legend;
* with ``--labeled 1 2 4 ...``: ``label_efficiency.md`` / ``.csv`` and ``dice_vs_labeled.png``,
  Dice when training on k labeled cases of each fold (the paper's stated future work), the
  table's last column and the figure's last point the regular folds' result (all labeled
  training cases);
* with ``--pretraining_curve CKPT|FOLDER ...``: ``pretraining_curve.md`` / ``.csv`` and
  ``dice_vs_pretraining.png``, the setups that start from pre-trained weights trained from
  each checkpoint (in a results root of its own), against pre-training iterations, with the
  random-FPN baselines at 0 iterations and the spread over pre-training seeds
  (``vox2vec_nnunet.benchmark.pretraining_curve``); the table and figure above then hold
  the setups without weights;
* with ``--select_lr``: ``lr_selection.md`` / ``.csv``, each setup's learning rate chosen on each
  fold, and the tables above from the runs at the chosen rates (below).

With ``--run`` the missing folds are first trained by ``nnUNetv2_train`` (resuming unfinished
ones), after writing ``splits_final.json`` for ``--folds K`` (the paper: 5 folds on BTCV, 3 on
MSD) and the label-efficiency splits. ``--repeats R`` trains and collects every fold R times
(nnU-Net's training is not deterministic): each fold counts as the mean over its runs, and the
tables add the run-to-run std (``vox2vec_nnunet.benchmark.repeats``).

Learning rates. Without ``--select_lr`` every setup trains at its budget's learning rate
(``vox2vec_nnunet.training.budgets``: each setup's own). With ``--select_lr`` each setup's rate is
chosen on every scored fold by one rule that never sees that fold's validation cases: an inner
split of the fold's training cases only (about a third validate, at least one; seeded by the
fold; appended to ``splits_final.json``), one short run of the setup's own trainer and budget per
value of ``--lr_grid`` (FPN setups, Adam; default 1e-4 3e-4 1e-3 3e-3) or ``--unet_lr_grid``
(nnU-Net's U-Nets, SGD; default 1e-3 3e-3 1e-2 3e-2) on it, given to ``nnUNetv2_train`` as
``VOX2VEC_LEARNING_RATE`` in the results root ``$nnUNet_results/DatasetXXX/vox2vec_selection/
lr<value>``; the value with the best foreground mean Dice on the inner validation cases wins
(equal Dice: the smaller value); then the fold is trained on all its training cases at that value
and scored on its validation cases. These final runs live in their own results root,
``$nnUNet_results/DatasetXXX/vox2vec_selection/selected`` (with ``--repeats``, run r >= 2 under
``selected/DatasetXXX/vox2vec_repeats/run<r>``), so the runs at the budget's rates in the regular
results folder are never overwritten and both can be compared; predict with them by pointing
``nnUNet_results`` there, e.g. ``nnUNet_results=$nnUNet_results/DatasetXXX/vox2vec_selection/
selected nnUNetv2_predict -d XXX -c 3d_vox2vec -p Vox2VecPlans -tr TRAINER -f 0 1 2 3 4 ...``
(the command prints the lines). With ``--labeled k`` the inner split is drawn from the k labeled
cases; a single labeled case cannot be split, so k = 1 takes the choice made on its regular fold
(the table says so). With ``--repeats R`` the choice is made once per fold and the final runs are
repeated. Before training, the command prints how many inner and final runs this adds and,
from the epoch times logged by finished runs of the same trainers, an estimate of their time.
Fine-tuning's learning rate is its head's: its backbone keeps the paper's 3e-5 -> 3e-4 warm-up
whatever the head's rate. Inner and final runs resume and are reused on a rerun; a fold that was
trained at another rate than the one chosen now is reported and left alone (delete it to retrain).

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
    vox2vec_nnunet_benchmark -d 17 --folds 5 --run --select_lr -device cuda \\
        --pretrained_weights vox2vec_fpn.pth --setups scratch linear_probe finetune
    vox2vec_nnunet_benchmark -d 17 --folds 5 --run --setups linear_probe linear_probe_random_bn \\
        --pretraining_curve .../Vox2VecPretrainTrainer__Vox2VecPlans__3d_vox2vec_pretrain/fold_all
    vox2vec_nnunet_benchmark -d 17 --folds 5 --run --pretrained_weights vox2vec_fpn.pth \\
        --setups scratch finetune unet_scratch unet_finetune --unet_plans nnUNetResEncUNetMPlans \\
        --unet_pretrained_weights vox2vec_resenc_m.pth
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from vox2vec_nnunet.benchmark.lr_selection import DEFAULT_LR_GRID, DEFAULT_UNET_LR_GRID, SELECTION_SUBDIR
from vox2vec_nnunet.benchmark.pipeline import OUTPUT_SUBDIR, run_benchmark
from vox2vec_nnunet.benchmark.repeats import REPEATS_SUBDIR
from vox2vec_nnunet.benchmark.request import DEFAULT_SETUPS, BenchmarkRequest
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.training.setups import SETUPS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_benchmark", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tables (Dice mean ± std over folds) and figures (Dice vs trainable "
                    "parameters, vs labeled cases) of the vox2vec evaluation setups from nnU-Net "
                    "cross-validation folds; --run trains the missing folds first.",
        epilog=__doc__)
    p.add_argument("-d", dest="dataset", required=True, help="dataset id or DatasetXXX_Name")
    p.add_argument("-p", dest="plans", default="Vox2VecPlans", help="plans identifier of the FPN setups")
    p.add_argument("-c", dest="configuration", default="3d_vox2vec", help="configuration of the FPN setups")
    p.add_argument("--unet_plans", metavar="PLANS",
                   help="nnU-Net plans identifier of the unet_* setups (e.g. nnUNetResEncUNetMPlans)")
    p.add_argument("--unet_configuration", default="3d_fullres", metavar="CONFIG",
                   help="configuration of the unet_* setups (default: %(default)s)")
    p.add_argument("--setups", nargs="+", default=list(DEFAULT_SETUPS),
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
                   help="label-efficiency mode: also train/collect on K labeled cases of each fold's training cases")
    p.add_argument("--pretraining_curve", nargs="+", type=Path, metavar="CKPT",
                   help="checkpoints of vox2vec pre-training runs (files, snapshots folders or fold_all folders): "
                        "train the setups that need weights from each, and draw Dice against pre-training "
                        "iterations (instead of --pretrained_weights)")
    p.add_argument("--repeats", type=int, default=1, metavar="R",
                   help="train (with --run) and collect every fold R times, since nnU-Net's training is not "
                        "deterministic: run 1 in the regular results folder, run r in "
                        f"$nnUNet_results/DatasetXXX/{REPEATS_SUBDIR}/run<r> (with --select_lr: the same under "
                        f"{SELECTION_SUBDIR}/selected); a fold counts as the mean over its runs and the table adds the "
                        "run-to-run std (default: %(default)s)")
    p.add_argument("--select_lr", action="store_true",
                   help="choose each setup's learning rate on every scored fold: one run per grid value on an "
                        "inner split of the fold's training cases (results roots "
                        f"$nnUNet_results/DatasetXXX/{SELECTION_SUBDIR}/lr<value>), the best foreground mean Dice "
                        "on the inner validation cases (equal Dice: the smaller value), then the fold trained at it "
                        f"in $nnUNet_results/DatasetXXX/{SELECTION_SUBDIR}/selected (see below)")
    p.add_argument("--lr_grid", nargs="+", type=float, metavar="LR",
                   help="with --select_lr: the learning rates tried for the FPN setups (Adam; default: "
                        f"{' '.join(f'{v:g}' for v in DEFAULT_LR_GRID)})")
    p.add_argument("--unet_lr_grid", nargs="+", type=float, metavar="LR",
                   help="with --select_lr: the learning rates tried for the unet_* setups (SGD; default: "
                        f"{' '.join(f'{v:g}' for v in DEFAULT_UNET_LR_GRID)})")
    p.add_argument("--overwrite_splits", action="store_true",
                   help="with --run: replace a splits_final.json that has another number of folds")
    p.add_argument("-o", dest="output", type=Path,
                   help=f"output folder (default $nnUNet_results/DatasetXXX/{OUTPUT_SUBDIR})")
    return p


def request_from(args: argparse.Namespace) -> BenchmarkRequest:
    """The request the parsed command line asks for."""
    if not args.select_lr and (args.lr_grid or args.unet_lr_grid):
        raise Vox2VecError("--lr_grid and --unet_lr_grid go with --select_lr")
    return BenchmarkRequest(
        dataset=args.dataset, setups=tuple(args.setups), plans=args.plans, configuration=args.configuration,
        unet_plans=args.unet_plans, unet_configuration=args.unet_configuration, trainer_variant=args.trainer_variant,
        folds=args.folds, fold_ids=tuple(args.fold_ids or ()), pretrained_weights=args.pretrained_weights,
        unet_pretrained_weights=args.unet_pretrained_weights, run=args.run, device=args.device,
        labeled=tuple(args.labeled or ()), pretraining_curve=tuple(args.pretraining_curve or ()),
        repeats=args.repeats, select_lr=args.select_lr, lr_grid=tuple(args.lr_grid or DEFAULT_LR_GRID),
        unet_lr_grid=tuple(args.unet_lr_grid or DEFAULT_UNET_LR_GRID), overwrite_splits=args.overwrite_splits,
        output=args.output)


@command
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = run_benchmark(request_from(args))
    except (ValueError, FileNotFoundError) as e:  # bad splits, weights, labels, grids or setup names
        raise Vox2VecError(str(e)) from None
    print(report.text())
    errors = report.errors()
    if errors:
        print(errors, file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
