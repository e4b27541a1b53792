"""``vox2vec_nnunet_plan``: write the vox2vec plans for a dataset and preprocess it with nnU-Net.

Example::

    nnUNetv2_extract_fingerprint -d 501          # or let this command run it
    vox2vec_nnunet_plan -d 501                   # writes Vox2VecPlans.json, preprocesses 3d_vox2vec
    nnUNetv2_train 501 3d_vox2vec 0 -p Vox2VecPlans -tr Vox2VecTrainer
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vox2vec_nnunet.commands.settings_options import add_settings_options, settings_from_options
from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.nnunet_env import dataset_name, require_path_variable
from vox2vec_nnunet_plans.builder import SEGMENTATION_CONFIGURATION, default_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = default_settings(SEGMENTATION_CONFIGURATION)
    p = argparse.ArgumentParser(
        prog="vox2vec_nnunet_plan",
        description="Write the vox2vec plans (FPN swapped in, 1x1x2 mm, patch 128x128x32, batch 7, HU window "
                    "(-1350, 1000) -> [0, 1]) for nnU-Net datasets and preprocess them with nnU-Net's own "
                    "preprocessor. Spatial options are slice axis first.")
    p.add_argument("-d", "--dataset", nargs="+", required=True, help="dataset IDs or names")
    add_settings_options(p, defaults, batch_size=True)
    p.add_argument("--no_preprocess", action="store_true", help="only write the plans")
    return p.parse_args(argv)


def check_ct_channels(dataset_json: dict, dataset_json_file: Path) -> None:
    """The fixed HU window only makes sense for CT (paper Sect. 4.2)."""
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    not_ct = {k: v for k, v in channels.items() if str(v).lower() != "ct"}
    if not channels or not_ct:
        raise Vox2VecError(
            f"{dataset_json_file}: vox2vec works on CT in Hounsfield units (fixed window -1350..1000 HU), but "
            f"channel(s) {not_ct or channels} are not named 'CT'. Use vox2vec only with CT datasets; if the "
            f"channel is CT in HU, set its name to \"CT\" in channel_names.")


def plan_dataset(dataset: str, args: argparse.Namespace) -> None:
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess

    from vox2vec_nnunet_plans.planner import Vox2VecPlanner

    name = dataset_name(dataset)
    raw_json = require_path_variable("nnUNet_raw") / name / "dataset.json"
    if not raw_json.is_file():
        raise Vox2VecError(f"{raw_json} does not exist: is {name} an nnU-Net raw dataset?")
    check_ct_channels(load_json(str(raw_json)), raw_json)
    preprocessed = require_path_variable("nnUNet_preprocessed") / name
    if not (preprocessed / "dataset_fingerprint.json").is_file():
        print(f"[{name}] extracting nnU-Net's dataset fingerprint")
        extract_fingerprints([int(name[7:10])], num_processes=args.num_processes, check_dataset_integrity=True)
    settings = settings_from_options(default_settings(SEGMENTATION_CONFIGURATION), args)
    planner = Vox2VecPlanner(name, plans_name=args.plans_name, settings=settings)
    planner.plan_experiment()
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
