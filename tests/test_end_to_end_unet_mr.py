"""vox2vec for nnU-Net's own U-Nets on a two-channel MR dataset through the real commands, on the
CPU: MR phantoms (T1, T2) -> nnU-Net's ResEnc planner (z-scoring both channels) -> prepared
unlabeled scans -> pre-training of the U-Net's encoder -> fine-tuning from it -> nnUNetv2_predict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_cli import nnunet_env, run

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 505, 905
PLANS, CONFIGURATION = "nnUNetResEncUNetTinyPlans", "3d_fullres"


def test_pretrain_the_resenc_unet_on_two_channel_mr_finetune_it_and_predict(tmp_path):
    env = nnunet_env(tmp_path)
    run(["python", "-m", "vox2vec_nnunet.commands.phantoms", "-d", DATASET, "-n", "5", "--unlabeled", "1",
         "--modality", "mr", "--channels", "t1", "t2", "--downsample", "4", "--name", "MRPhantoms", "--no_pbar"], env)
    raw = Path(env["nnUNet_raw"]) / "Dataset505_MRPhantoms"
    pre, results = Path(env["nnUNet_preprocessed"]), Path(env["nnUNet_results"])
    run(["nnUNetv2_plan_and_preprocess", "-d", DATASET, "-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "0.02",
         "-overwrite_target_spacing", "10", "8", "8", "-overwrite_plans_name", PLANS, "-c", CONFIGURATION,
         "-np", "1", "-npfp", "1"], env)
    labeled = json.loads((pre / "Dataset505_MRPhantoms" / f"{PLANS}.json").read_text())["configurations"][CONFIGURATION]
    assert labeled["normalization_schemes"] == ["ZScoreNormalization"] * 2

    out = run(["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "-o", PRETRAIN, "--plans", PLANS,
               "--configuration", CONFIGURATION, "--plans_dataset", DATASET, "--num_positions", "64", "-np", "1"],
              env).stdout
    assert "6 prepared, 0 already done, 0 skipped of 6" in out

    run(["nnUNetv2_train", PRETRAIN, CONFIGURATION, "all", "-p", PLANS, "-tr", "Vox2VecPretrainTrainer_UNet_Test",
         "-device", "cpu"], env)
    checkpoint = (results / "Dataset905_Vox2VecPretraining" / f"Vox2VecPretrainTrainer_UNet_Test__{PLANS}__"
                  f"{CONFIGURATION}" / "fold_all" / "checkpoint_final.pth")
    pretrained = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert all(np.isfinite(pretrained["logging"]["train_losses"]))
    stem = [v for k, v in pretrained["network_weights"].items() if k.startswith("encoder.stem") and v.ndim == 5]
    assert stem and stem[0].shape[1] == 2  # the encoder takes both channels

    trainer = "nnUNetTrainer_Vox2VecFineTune_Test"
    run(["nnUNetv2_train", DATASET, CONFIGURATION, "0", "-p", PLANS, "-tr", trainer, "-device", "cpu",
         "-pretrained_weights", checkpoint], env)
    fold = results / "Dataset505_MRPhantoms" / f"{trainer}__{PLANS}__{CONFIGURATION}" / "fold_0"
    assert json.loads((fold / "vox2vec_run.json").read_text())["backbone_source"] == "pretrained"
    assert 0.0 <= json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"] <= 1.0

    predictions = tmp_path / "predictions"
    run(["nnUNetv2_predict", "-i", raw / "imagesTs", "-o", predictions, "-d", DATASET, "-c", CONFIGURATION, "-p",
         PLANS, "-tr", trainer, "-f", "0", "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"], env)
    cases = sorted({f.name[:-len("_0000.nii.gz")] for f in (raw / "imagesTs").glob("*_0000.nii.gz")})
    assert cases
    for case in cases:
        prediction = sitk.ReadImage(str(predictions / f"{case}.nii.gz"))
        assert prediction.GetSize() == sitk.ReadImage(str(raw / "imagesTs" / f"{case}_0000.nii.gz")).GetSize()
