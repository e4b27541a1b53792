"""``vox2vec_nnunet_plan``: write the vox2vec plans for a dataset and preprocess it with nnU-Net.

Example::

    nnUNetv2_extract_fingerprint -d 501          # or let this command run it
    vox2vec_nnunet_plan -d 501                   # writes Vox2VecPlans.json, preprocesses 3d_vox2vec
    nnUNetv2_train 501 3d_vox2vec 0 -p Vox2VecPlans -tr Vox2VecTrainer
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from vox2vec_nnunet.channels import channel_names, hounsfield_problem, is_ct
from vox2vec_nnunet.commands.settings_options import add_settings_options, settings_from_options
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.nnunet_env import dataset_name, require_path_variable
from vox2vec_nnunet_plans.builder import SEGMENTATION_CONFIGURATION, default_settings, load_template


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = default_settings(SEGMENTATION_CONFIGURATION)
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_plan",
        description="Write the vox2vec plans (FPN swapped in, 1x1x2 mm, patch 128x128x32, batch 7; a CT channel "
                    "gets the HU window (-1350, 1000) -> [0, 1], any other channel the normalization nnU-Net "
                    "chooses for its name, e.g. z-scoring for MR) for nnU-Net datasets and preprocess them with "
                    "nnU-Net's own preprocessor. Spatial options are slice axis first.")
    p.add_argument("-d", "--dataset", nargs="+", required=True, help="dataset IDs or names")
    add_settings_options(p, defaults, batch_size=True)
    p.add_argument("--no_preprocess", action="store_true", help="only write the plans")
    return p.parse_args(argv)


HU_CHECKED_CASES = 3
"""Training cases whose CT channels the plan command checks for Hounsfield units (reading every
case would add a pass over the dataset; the pre-training preparation checks every scan)."""


def dataset_channels(dataset_json: dict, dataset_json_file: Path) -> dict[str, str]:
    """Channel names of a raw dataset (refused with the file named when missing)."""
    try:
        return channel_names(dataset_json, dataset_json_file)
    except ValueError as error:
        raise Vox2VecError(str(error)) from None


def check_hounsfield_units(raw_folder: Path, dataset_json: dict, channels: dict[str, str]) -> None:
    """Refuse a dataset whose channel named CT is clearly not in HU (in the first
    :data:`HU_CHECKED_CASES` training cases): the fixed HU window would clip it to one value."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    ct = [int(c) for c, name in channels.items() if is_ct(name)]
    if not ct:
        return
    cases = get_filenames_of_train_images_and_targets(str(raw_folder), copy.deepcopy(dataset_json))
    for case in sorted(cases)[:HU_CHECKED_CASES]:
        files = cases[case]["images"]
        if len(files) != len(channels):
            raise Vox2VecError(f"{raw_folder}: case {case} has {len(files)} image files, but dataset.json names "
                               f"{len(channels)} channels {channels}")
        reader = determine_reader_writer_from_dataset_json(dataset_json, files[0], verbose=False)
        for c in ct:
            image, _ = reader().read_images((files[c],))
            problem = hounsfield_problem(image)
            if problem is not None:
                raise Vox2VecError(f"{files[c]} (channel {c}, {channels[str(c)]!r}): {problem}")


def plan_dataset(dataset: str, args: argparse.Namespace) -> None:
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess

    from vox2vec_nnunet_plans.planner import Vox2VecPlanner

    name = dataset_name(dataset)
    raw_json = require_path_variable("nnUNet_raw") / name / "dataset.json"
    if not raw_json.is_file():
        raise Vox2VecError(f"{raw_json} does not exist: is {name} an nnU-Net raw dataset?")
    dataset_json = load_json(str(raw_json))
    channels = dataset_channels(dataset_json, raw_json)
    check_hounsfield_units(raw_json.parent, dataset_json, channels)
    preprocessed = require_path_variable("nnUNet_preprocessed") / name
    if not (preprocessed / "dataset_fingerprint.json").is_file():
        print(f"[{name}] extracting nnU-Net's dataset fingerprint")
        extract_fingerprints([int(name[7:10])], num_processes=args.num_processes, check_dataset_integrity=True)
    settings = settings_from_options(default_settings(SEGMENTATION_CONFIGURATION), args)
    planner = Vox2VecPlanner(name, plans_name=args.plans_name, settings=settings)
    plans = planner.plan_experiment()
    configuration = plans["configurations"][SEGMENTATION_CONFIGURATION]
    print(f"[{name}] channels: " + ", ".join(
        f"{c} {channels[c]!r} -> {'HU window ' + str(load_template()['hu_window']) if is_ct(channels[c]) else scheme}"
        f"{' inside the nonzero mask' if mask else ''}" for c, scheme, mask in
        zip(channels, configuration["normalization_schemes"], configuration["use_mask_for_norm"])))
    print(f"[{name}] wrote {preprocessed / (args.plans_name + '.json')}: configuration {SEGMENTATION_CONFIGURATION}, "
          f"spacing {list(settings.spacing)} mm, patch {list(settings.patch_size)}, batch {settings.batch_size}, "
          f"FPN {settings.base_channels} base channels x {settings.num_levels} levels")
    if not args.no_preprocess:
        print(f"[{name}] preprocessing {SEGMENTATION_CONFIGURATION} with nnU-Net's DefaultPreprocessor")
        preprocess([int(name[7:10])], plans_identifier=args.plans_name, configurations=[SEGMENTATION_CONFIGURATION],
                   num_processes=[args.num_processes])
    print(f"[{name}] train with: nnUNetv2_train {int(name[7:10])} {SEGMENTATION_CONFIGURATION} FOLD "
          f"-p {args.plans_name} -tr Vox2VecTrainer")


@command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for dataset in args.dataset:
        plan_dataset(dataset, args)
    return 0
