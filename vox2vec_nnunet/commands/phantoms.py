"""``vox2vec_nnunet_phantoms``: write synthetic abdominal CT phantoms as an nnU-Net v2 raw
dataset (SPEC section 3), labeled cases in imagesTr/labelsTr and unlabeled ones (for
self-supervised pre-training) in imagesTs.

    vox2vec_nnunet_phantoms -d 501 -n 10 --unlabeled 20 --seed 0 [--name Phantoms]
                            [--spacing Z Y X] [--raw DIR] [--overwrite] [-np N]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vox2vec_nnunet.phantoms import PHANTOM_LABELS, PhantomConfig, write_nnunet_raw_dataset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vox2vec_nnunet_phantoms",
        description="Write synthetic abdominal CT phantoms (HU, labels "
                    + ", ".join(f"{k}={v}" for k, v in PHANTOM_LABELS.items())
                    + ") as the nnU-Net v2 raw dataset Dataset{ID}_{NAME}.")
    parser.add_argument("-d", "--dataset_id", type=int, required=True, help="nnU-Net dataset ID (1..999)")
    parser.add_argument("-n", "--num_labeled", type=int, required=True,
                        help="labeled cases, written to imagesTr/labelsTr")
    parser.add_argument("--unlabeled", type=int, default=0,
                        help="unlabeled cases, written to imagesTs (for pre-training); default 0")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; case i is subject (seed, i); default 0")
    parser.add_argument("--name", default="Phantoms", help="dataset name; default Phantoms")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                        default=PhantomConfig().spacing,
                        help="voxel spacing in mm, slice axis first; default %(default)s")
    parser.add_argument("--raw", type=Path, default=None, metavar="DIR",
                        help="nnU-Net raw folder to write into; default $nnUNet_raw")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    parser.add_argument("-np", "--num_processes", type=int, default=1, help="worker processes; default 1")
    parser.add_argument("--no_pbar", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raw = args.raw
    if raw is None:
        env = os.environ.get("nnUNet_raw")
        if not env:
            print("error: the environment variable nnUNet_raw is not set and --raw was not given. "
                  "Set it to nnU-Net's raw data folder (export nnUNet_raw=/path/to/nnUNet_raw) or pass "
                  "--raw DIR.", file=sys.stderr)
            return 2
        raw = Path(env)
    try:
        config = PhantomConfig(spacing=tuple(args.spacing))
        raw.mkdir(parents=True, exist_ok=True)
        folder = write_nnunet_raw_dataset(raw, args.dataset_id, args.name, args.num_labeled,
                                          num_unlabeled=args.unlabeled, seed=args.seed, config=config,
                                          num_processes=args.num_processes, overwrite=args.overwrite,
                                          progress=not args.no_pbar)
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {folder}")
    print(f"  imagesTr + labelsTr: {args.num_labeled} labeled cases")
    if args.unlabeled:
        print(f"  imagesTs: {args.unlabeled} unlabeled cases (for pre-training)")
    print(f"  shape (z, y, x) {config.shape}, spacing {config.spacing} mm, labels {PHANTOM_LABELS}")
    print(f"Next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} --verify_dataset_integrity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
