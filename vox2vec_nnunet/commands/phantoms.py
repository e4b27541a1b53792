"""``vox2vec_nnunet_phantoms``: write synthetic abdominal CT or MR phantoms as an nnU-Net v2 raw
dataset, labeled cases in imagesTr/labelsTr and unlabeled ones (for
self-supervised pre-training) in imagesTs.

    vox2vec_nnunet_phantoms -d 501 -n 10 --unlabeled 20 --seed 0 [--name Phantoms]
                            [--spacing Z Y X | --clinical [--slices MIN MAX] [--slice_mm MM ...]
                            [--downsample F] | --modality mr [--channels T1 T2] [--downsample F]]
                            [--raw DIR] [--overwrite] [-np N]

``--clinical`` draws every case's scan as a scanner writes it (512 x 512 pixels, 100-600
slices, bodies from a child to a large adult, the patient table, small fields of view;
:mod:`vox2vec_nnunet.phantoms.clinical`) and prints each case's geometry. ``--modality mr``
scans the same subjects (same labels) by MR (:mod:`vox2vec_nnunet.phantoms.mr`): T1- and/or
T2-weighted channels in arbitrary units, a bias field, Rician noise, 4-6 mm slices.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vox2vec_nnunet.phantoms import (CONTRASTS, PHANTOM_LABELS, ClinicalConfig, MRConfig, PhantomConfig, case_seed,
                                     describe, write_nnunet_raw_dataset)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vox2vec_nnunet_phantoms",
        description="Write synthetic abdominal CT phantoms (HU) or MR phantoms (--modality mr; labels "
                    + ", ".join(f"{k}={v}" for k, v in PHANTOM_LABELS.items())
                    + ") as the nnU-Net v2 raw dataset Dataset{ID}_{NAME}.")
    parser.add_argument("-d", "--dataset_id", type=int, required=True, help="nnU-Net dataset ID (1..999)")
    parser.add_argument("-n", "--num_labeled", type=int, required=True,
                        help="labeled cases, written to imagesTr/labelsTr")
    parser.add_argument("--unlabeled", type=int, default=0,
                        help="unlabeled cases, written to imagesTs (for pre-training); default 0")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; case i is subject (seed, i); default 0")
    parser.add_argument("--name", default="Phantoms", help="dataset name; default Phantoms")
    parser.add_argument("--modality", choices=("ct", "mr"), default="ct",
                        help="ct: images in HU (default); mr: the same subjects and labels with MR contrast "
                             "(arbitrary units, bias field, Rician noise, 4-6 x 1.2-2 x 1.2-2 mm voxels drawn per case)")
    parser.add_argument("--channels", type=str.upper, nargs="+", choices=sorted(CONTRASTS), default=None,
                        metavar="CONTRAST", help=f"with --modality mr: the channels, of {', '.join(sorted(CONTRASTS))} "
                                             f"(case-insensitive), in this order; default {' '.join(MRConfig().channels)}")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), default=None,
                        help=f"voxel spacing in mm, slice axis first; default {PhantomConfig().spacing}")
    parser.add_argument("--clinical", action="store_true",
                        help="clinical scans: per case 512 x 512 pixels of 0.6-0.9 mm (or a 180-230 mm "
                             "field of view around the kidneys), 100-600 slices of 0.6-5 mm, bodies 170-400 mm "
                             "wide, the patient table in most (up to 600 MB of int16 per image)")
    parser.add_argument("--slices", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="with --clinical: the range of the number of slices; default 100 600")
    parser.add_argument("--slice_mm", type=float, nargs="+", default=None, metavar="MM",
                        help="with --clinical: the slice spacings to draw from; default thin 0.6-1.25 mm or thick "
                             "1.5-5 mm (e.g. --slices 800 800 --slice_mm 0.625 for 500 mm of thin slices)")
    parser.add_argument("--downsample", type=int, default=1, metavar="F",
                        help="with --clinical or --modality mr: sample each scan F times coarser along every axis "
                             "(same field of view and subject; for quick looks and tests); default 1")
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
        mr = args.modality == "mr"
        if args.clinical and args.spacing is not None:
            raise ValueError("--spacing and --clinical exclude each other (clinical scans draw their spacing)")
        if mr and (args.clinical or args.spacing is not None):
            raise ValueError("--modality mr draws each case's MR grid (4-6 mm slices); --clinical and --spacing "
                             "are CT scans")
        if args.channels is not None and not mr:
            raise ValueError("--channels applies to --modality mr only (CT has one channel)")
        if not (args.clinical or mr) and args.downsample != 1:
            raise ValueError("--downsample applies to --clinical or --modality mr scans only")
        if not args.clinical and (args.slices or args.slice_mm):
            raise ValueError("--slices and --slice_mm apply to --clinical scans only")
        if mr:
            config = MRConfig(downsample=args.downsample,
                              channels=tuple(args.channels or MRConfig().channels))
        elif args.clinical:
            spacings = {} if args.slice_mm is None else {"thin_slice_mm": args.slice_mm, "thick_slice_mm": args.slice_mm}
            config = ClinicalConfig(downsample=args.downsample, slices=tuple(args.slices or ClinicalConfig().slices),
                                    **spacings)
        else:
            config = PhantomConfig(spacing=tuple(args.spacing or PhantomConfig().spacing))
        cases = args.num_labeled + args.unlabeled
        if args.clinical and cases >= 1:
            print(f"Clinical scans{f' (downsampled {args.downsample}x)' if args.downsample > 1 else ''}:")
            for i in range(cases):
                seed = case_seed(args.seed, i)
                print(f"  phantom_{i:04d}: {describe(config.case_geometry(seed), seed)}")
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
    if mr:
        print(f"  MR channels {dict(enumerate(config.channels))}, grids drawn per case (in dataset.json), "
              f"labels {PHANTOM_LABELS}")
    elif args.clinical:
        print(f"  clinical scans (geometry above and in dataset.json), labels {PHANTOM_LABELS}")
    else:
        print(f"  shape (z, y, x) {config.shape}, spacing {config.spacing} mm, labels {PHANTOM_LABELS}")
    print(f"Next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} --verify_dataset_integrity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
