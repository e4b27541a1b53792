"""``vox2vec_nnunet_prepare_pretraining``: gather unlabeled images into one pre-training dataset.

Examples::

    vox2vec_nnunet_prepare_pretraining -d 3 7 10 --folders /data/more_ct -o 900
    nnUNetv2_train 900 3d_vox2vec_pretrain all -p Vox2VecPlans -tr Vox2VecPretrainTrainer

    # for nnU-Net's own network of dataset 17's ResEnc M plans
    vox2vec_nnunet_prepare_pretraining -d 3 7 10 17 -o 901 --plans nnUNetResEncUNetMPlans \
        --configuration 3d_fullres --plans_dataset 17
    nnUNetv2_train 901 3d_fullres all -p nnUNetResEncUNetMPlans -tr Vox2VecPretrainTrainer_UNet

    # MR: every channel of the datasets (the same channels in each), z-scored as nnU-Net does
    vox2vec_nnunet_prepare_pretraining -d 21 22 -o 902
    vox2vec_nnunet_prepare_pretraining --folders /data/t2_scans --folder_channel T2 -o 903
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from vox2vec_nnunet.commands.settings_options import add_settings_options, settings_from_options
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.nnunet_env import dataset_name, require_path_variable
from vox2vec_nnunet.pretraining.prepare import (DEFAULT_NUM_POSITIONS, PreprocessingPlans, fpn_preprocessing,
                                                prepare_pretraining_dataset, pretraining_channels, run_summary,
                                                target_preprocessing, tasks_from_folder, tasks_from_raw_dataset,
                                                unique_tasks, write_dataset_files)
from vox2vec_nnunet_plans.builder import PRETRAINING_CONFIGURATION, default_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = default_settings(PRETRAINING_CONFIGURATION)
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_prepare_pretraining",
        description="Gather images from nnU-Net raw datasets (imagesTr and imagesTs, every channel; labels are not "
                    "used) and plain folders, preprocess them with nnU-Net's preprocessor (1x1x2 mm; CT kept in HU, "
                    "other channels z-scored as nnU-Net does), crop to the body and store body masks, as one nnU-Net "
                    "dataset for Vox2VecPretrainTrainer. All sources must have the same channels (single-channel "
                    "non-CT sources such as T1 and T2 pool into one channel; CT is never mixed with other "
                    "modalities). Scans smaller than a patch are kept (pre-training pads them); bad scans, and scans "
                    "whose body has fewer voxels than --num_positions, are reported and skipped; running again "
                    "resumes. Spatial options are slice axis first.")
    p.add_argument("-d", "--datasets", nargs="*", default=[], help="nnU-Net raw dataset IDs or names to take images from")
    p.add_argument("--folders", nargs="*", type=Path, default=[],
                   help="plain folders of image files, one single-channel scan per file")
    p.add_argument("--folder_channel", default="CT",
                   help="the channel the --folders files hold, named as in dataset.json channel_names (default: "
                        "%(default)s, in HU; e.g. T2 for MR, which is z-scored)")
    p.add_argument("-o", "--output_id", type=int, required=True, help="ID of the pre-training dataset to write")
    p.add_argument("--name", default="Vox2VecPretraining", help="its name (default: %(default)s)")
    p.add_argument("--num_positions", type=int, default=DEFAULT_NUM_POSITIONS,
                   help="m, the positions per volume the pre-training trainer samples: scans whose body has fewer "
                        "voxels are skipped (default: %(default)s, the paper's)")
    add_settings_options(p, defaults, batch_size=False)
    target = p.add_argument_group(
        "for nnU-Net's own network", "prepare the data for the network of an nnU-Net plans configuration of a labeled "
        "dataset (its spacing, patch size and network; CT kept in HU, its CTNormalization applied by the "
        "augmentation; other channels z-scored as the plans do), for Vox2VecPretrainTrainer_UNet; the FPN options "
        "above do not apply")
    target.add_argument("--plans", help="plans identifier of the labeled dataset, e.g. nnUNetResEncUNetMPlans")
    target.add_argument("--configuration", help="its configuration, e.g. 3d_fullres")
    target.add_argument("--plans_dataset", help="the labeled dataset (ID or name) whose plans these are")
    args = p.parse_args(argv)
    if args.num_positions < 1:
        p.error(f"--num_positions must be positive, got {args.num_positions}")
    given = [o for o in ("plans", "configuration", "plans_dataset") if getattr(args, o) is not None]
    if given and len(given) < 3:
        p.error("--plans, --configuration and --plans_dataset go together")
    fpn_options = [o for o in ("spacing", "patch_size", "base_channels", "num_levels") if getattr(args, o) is not None]
    if given and (fpn_options or args.plans_name != p.get_default("plans_name")):
        p.error(f"--plans takes spacing, patch and network from the plans; drop "
                f"{', '.join('--' + o for o in fpn_options) or '-p'}")
    return args


def preprocessing_plans(args: argparse.Namespace, channels: tuple[str, ...]) -> PreprocessingPlans:
    """The vox2vec FPN's pre-training plans from the options, or a labeled dataset's plans configuration."""
    if args.plans is None:
        return fpn_preprocessing(settings_from_options(default_settings(PRETRAINING_CONFIGURATION), args),
                                 args.plans_name, channels)
    plans_file = require_path_variable("nnUNet_preprocessed") / dataset_name(args.plans_dataset) / f"{args.plans}.json"
    if not plans_file.is_file():
        raise Vox2VecError(f"{plans_file} does not exist: plan the labeled dataset first (e.g. "
                           f"nnUNetv2_plan_and_preprocess -d {args.plans_dataset} -pl nnUNetPlannerResEncM) or give "
                           f"its plans identifier")
    return target_preprocessing(json.loads(plans_file.read_text()), args.configuration, str(plans_file), channels)


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
    raw_root, preprocessed_root = require_path_variable("nnUNet_raw"), require_path_variable("nnUNet_preprocessed")
    name = output_dataset_name(args.output_id, args.name)
    tasks = [t for d in args.datasets for t in tasks_from_raw_dataset(raw_root / dataset_name(d))]
    tasks += [t for f in args.folders for t in tasks_from_folder(f, args.folder_channel)]
    tasks = unique_tasks(tasks)
    if not tasks:
        raise Vox2VecError("the sources hold no image files")
    channels = pretraining_channels(tasks)
    preprocessing = preprocessing_plans(args, channels)
    print(f"{len(tasks)} images from {len(args.datasets) + len(args.folders)} sources -> {name} "
          f"({preprocessing.plans['plans_name']} {preprocessing.configuration}: spacing {preprocessing.spacing} mm, "
          f"patch {preprocessing.patch_size}, {args.num_processes} processes)")
    print("channels: " + ", ".join(f"{c} {n!r} -> {'HU kept' if s == 'NoNormalization' else s}" for c, (n, s) in
                                   enumerate(zip(channels, preprocessing.entry["normalization_schemes"]))))
    start = time.perf_counter()
    results = prepare_pretraining_dataset(tasks, preprocessed_root / name, preprocessing, args.num_processes,
                                          args.num_positions)
    seconds = time.perf_counter() - start
    skipped = [r for r in results if r.status == "skipped"]
    for r in skipped:
        print(f"skipped {r.image_file}: {r.reason}")
    write_dataset_files(raw_root / name, preprocessed_root / name, preprocessing, results, args.num_positions)
    counts = Counter(r.status for r in results)
    print(f"\nSummary: {counts['done']} prepared, {counts['already done']} already done, {counts['skipped']} skipped "
          f"of {len(results)}. Report: {preprocessed_root / name / 'vox2vec_preparation_report.json'}")
    print("\n".join(run_summary(results, seconds, args.num_processes)))
    trainer = "Vox2VecPretrainTrainer" if preprocessing.settings is not None else "Vox2VecPretrainTrainer_UNet"
    print(f"Pre-train with: nnUNetv2_train {args.output_id} {preprocessing.configuration} all -p "
          f"{preprocessing.plans['plans_name']} -tr {trainer}")
    return 0
