"""``vox2vec_nnunet_prepare_pretraining``: gather unlabeled CT into one pre-training dataset.

Example::

    vox2vec_nnunet_prepare_pretraining -d 3 7 10 --folders /data/more_ct -o 900
    nnUNetv2_train 900 3d_vox2vec_pretrain all -p Vox2VecPlans -tr Vox2VecPretrainTrainer
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from vox2vec_nnunet.commands.settings_options import add_settings_options, settings_from_options
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.nnunet_env import dataset_name, require_path_variable
from vox2vec_nnunet.pretraining.prepare import (DEFAULT_NUM_POSITIONS, prepare_pretraining_dataset, run_summary,
                                                tasks_from_folder, tasks_from_raw_dataset, unique_tasks,
                                                write_dataset_files)
from vox2vec_nnunet_plans.builder import PRETRAINING_CONFIGURATION, default_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = default_settings(PRETRAINING_CONFIGURATION)
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_prepare_pretraining",
        description="Gather CT images from nnU-Net raw datasets (imagesTr and imagesTs; labels are not used) and "
                    "plain folders, preprocess them with nnU-Net's preprocessor (1x1x2 mm, HU kept), crop to the "
                    "body and store body masks, as one nnU-Net dataset for Vox2VecPretrainTrainer. Scans smaller than "
                    "a patch are kept (pre-training pads them with air); bad scans, and scans whose body has fewer "
                    "voxels than --num_positions, are reported and skipped; running again resumes. Spatial options "
                    "are slice axis first.")
    p.add_argument("-d", "--datasets", nargs="*", default=[], help="nnU-Net raw dataset IDs or names to take images from")
    p.add_argument("--folders", nargs="*", type=Path, default=[], help="plain folders of CT image files (HU)")
    p.add_argument("-o", "--output_id", type=int, required=True, help="ID of the pre-training dataset to write")
    p.add_argument("--name", default="Vox2VecPretraining", help="its name (default: %(default)s)")
    p.add_argument("--num_positions", type=int, default=DEFAULT_NUM_POSITIONS,
                   help="m, the positions per volume the pre-training trainer samples: scans whose body has fewer "
                        "voxels are skipped (default: %(default)s, the paper's)")
    add_settings_options(p, defaults, batch_size=False)
    args = p.parse_args(argv)
    if args.num_positions < 1:
        p.error(f"--num_positions must be positive, got {args.num_positions}")
    return args


def output_dataset_name(output_id: int, name: str) -> str:
    wanted = f"Dataset{output_id:03d}_{name}"
    for variable in ("nnUNet_raw", "nnUNet_preprocessed"):
        root = require_path_variable(variable)
        clash = [d.name for d in root.glob(f"Dataset{output_id:03d}_*") if d.name != wanted] if root.is_dir() else []
        if clash:
            raise Vox2VecError(f"dataset ID {output_id} is already used by {clash[0]} in ${variable} ({root}); "
                               f"choose another -o or the same --name")
    return wanted


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.datasets and not args.folders:
        raise Vox2VecError("give at least one source: -d DATASET_ID ... and/or --folders DIR ...")
    settings = settings_from_options(default_settings(PRETRAINING_CONFIGURATION), args)
    raw_root, preprocessed_root = require_path_variable("nnUNet_raw"), require_path_variable("nnUNet_preprocessed")
    name = output_dataset_name(args.output_id, args.name)
    tasks = [t for d in args.datasets for t in tasks_from_raw_dataset(raw_root / dataset_name(d))]
    tasks += [t for f in args.folders for t in tasks_from_folder(f)]
    tasks = unique_tasks(tasks)
    if not tasks:
        raise Vox2VecError("the sources hold no CT image files")
    print(f"{len(tasks)} images from {len(args.datasets) + len(args.folders)} sources -> {name} "
          f"(spacing {list(settings.spacing)} mm, patch {list(settings.patch_size)}, {args.num_processes} processes)")
    start = time.perf_counter()
    results = prepare_pretraining_dataset(tasks, preprocessed_root / name, args.plans_name, settings,
                                          args.num_processes, args.num_positions)
    seconds = time.perf_counter() - start
    skipped = [r for r in results if r.status == "skipped"]
    for r in skipped:
        print(f"skipped {r.image_file}: {r.reason}")
    write_dataset_files(raw_root / name, preprocessed_root / name, args.plans_name, settings, results,
                        args.num_positions)
    counts = Counter(r.status for r in results)
    print(f"\nSummary: {counts['done']} prepared, {counts['already done']} already done, {counts['skipped']} skipped "
          f"of {len(results)}. Report: {preprocessed_root / name / 'vox2vec_preparation_report.json'}")
    print("\n".join(run_summary(results, seconds, args.num_processes)))
    print(f"Pre-train with: nnUNetv2_train {args.output_id} {PRETRAINING_CONFIGURATION} all -p {args.plans_name} "
          f"-tr Vox2VecPretrainTrainer")
    return 0
