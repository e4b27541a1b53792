"""``vox2vec_nnunet_demo``: the whole product on generated CT (or MR) phantoms, in one command."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from vox2vec_nnunet.demo import DemoSettings, run_demo
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.training.variants import SEEDS


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_demo",
        description="Make CT (or MR) phantoms, pre-train a scaled-down vox2vec FPN on them, linear-probe it and a randomly "
                    "initialised FPN with cross-validation, and print the benchmark table and figure. Runs on the "
                    "CPU in about 13 minutes on 2 cores; run again to resume.")
    p.add_argument("-o", "--workspace", type=Path, default=Path("vox2vec_demo"),
                   help="folder for all data and results (default: %(default)s)")
    p.add_argument("--labeled_phantoms", type=int, default=9,
                   help="labeled phantoms to generate, the cases of the cross-validation (default: %(default)s)")
    p.add_argument("--unlabeled", type=int, default=16, help="extra unlabeled phantoms for pre-training "
                                                             "(default: %(default)s)")
    p.add_argument("--modality", choices=("ct", "mr"), default="ct",
                   help="phantoms scanned by CT (HU) or by MR (T2-weighted, arbitrary units, bias field, Rician "
                        "noise; z-scored by nnU-Net), in datasets of their own (default: %(default)s)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds (default: %(default)s)")
    p.add_argument("--long", action="store_true", help="4x longer pre-training and probes (the *_DemoLong trainers)")
    p.add_argument("--table1", action="store_true",
                   help="the longer Table 1 mode: every evaluation setup at the same budget on every fold, then "
                        "from scratch, fine-tuning and non-linear probing on few labeled cases (--labeled_cases)")
    p.add_argument("--labeled_cases", type=int, nargs="+", default=[1, 2, 4], metavar="K",
                   help="with --table1: numbers of labeled training cases per fold (default: 1 2 4)")
    p.add_argument("--repeats", type=int, default=1, metavar="R",
                   help="with --table1: train every fold R times and count it as the mean of its runs, with the "
                        "run-to-run spread (nnU-Net's training is not deterministic; default: %(default)s)")
    p.add_argument("--trainer_variant", help="suffix of the trainer variants to use instead (e.g. Demo, DemoLong)")
    p.add_argument("-device", default="cpu", choices=("cpu", "cuda"), help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: %(default)s)")
    p.add_argument("--pretrain_seeds", type=int, nargs="+", default=[0], metavar="S",
                   help=f"pre-training seeds, of {', '.join(map(str, SEEDS))} (default: %(default)s); with several, one pre-training each and the "
                        "linear probe's spread over them (mean ± std over seeds)")
    p.add_argument("-np", "--num_processes", type=int, default=max(1, os.cpu_count() or 1),
                   help="processes for data work (default: %(default)s)")
    args = p.parse_args(argv)
    if args.repeats != 1 and not args.table1:
        raise Vox2VecError("--repeats goes with --table1 (the demo's probes run once per fold)")
    if args.repeats < 1:
        raise Vox2VecError(f"--repeats must be at least 1, got {args.repeats}")
    unknown = sorted(set(args.pretrain_seeds) - set(SEEDS))
    if unknown:
        raise Vox2VecError(f"--pretrain_seeds {' '.join(map(str, unknown))}: the demo's pre-training variants have the "
                           f"seeds {', '.join(map(str, SEEDS))} (Vox2VecPretrainTrainer_Demo_Seed0, ...)")
    variant = args.trainer_variant or ("DemoLong" if args.long else "Demo")
    return run_demo(DemoSettings(workspace=args.workspace.resolve(), labeled_phantoms=args.labeled_phantoms, unlabeled=args.unlabeled,
                                 folds=args.folds, trainer_variant=variant, device=args.device, seed=args.seed,
                                 num_processes=args.num_processes, table1=args.table1,
                                 labeled_cases=tuple(args.labeled_cases), repeats=args.repeats,
                                 pretrain_seeds=tuple(dict.fromkeys(args.pretrain_seeds)), modality=args.modality))
