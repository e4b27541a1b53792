"""vox2vec for nnU-Net's own U-Nets through the real commands, on the CPU: nnU-Net plans a small
residual-encoder U-Net for phantoms, the unlabeled scans are prepared for it, pre-trained,
fine-tuned with ``nnUNetv2_train -pretrained_weights`` and ``nnUNetv2_predict`` segments."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_cli import nnunet_env, predict_on_cpu, run, train_from_pretrained
from vox2vec_nnunet.phantoms import PhantomConfig, write_nnunet_raw_dataset
from vox2vec_nnunet.weights import load_weights_file

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 502, 902
PLANS, CONFIGURATION = "nnUNetResEncUNetTinyPlans", "3d_fullres"


def test_pretrain_the_resenc_unet_finetune_it_and_predict(tmp_path):
    env = nnunet_env(tmp_path)
    raw = write_nnunet_raw_dataset(Path(env["nnUNet_raw"]), DATASET, "Phantoms", num_labeled=6, num_unlabeled=3,
                                   seed=0, config=PhantomConfig(spacing=(10.0, 8.0, 8.0)), progress=False)
    pre, results = Path(env["nnUNet_preprocessed"]), Path(env["nnUNet_results"])
    # nnU-Net's ResEnc M planner, made small for the CPU: a 0.02 GB GPU memory target and a coarse spacing
    run(["nnUNetv2_plan_and_preprocess", "-d", DATASET, "-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "0.02",
         "-overwrite_target_spacing", "10", "8", "8", "-overwrite_plans_name", PLANS, "-c", CONFIGURATION,
         "-np", "1", "-npfp", "1"], env)
    labeled_plans = json.loads((pre / "Dataset502_Phantoms" / f"{PLANS}.json").read_text())
    architecture = labeled_plans["configurations"][CONFIGURATION]["architecture"]
    assert architecture["network_class_name"].endswith("ResidualEncoderUNet")
    assert architecture["arch_kwargs"]["features_per_stage"] == [32, 64, 128]  # tiny: 3 stages

    out = run(["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "-o", PRETRAIN, "--plans", PLANS,
               "--configuration", CONFIGURATION, "--plans_dataset", DATASET, "--num_positions", "64", "-np", "1"],
              env).stdout
    assert "9 prepared" in out and "-tr Vox2VecPretrainTrainer_UNet" in out
    pretraining_plans = json.loads((pre / "Dataset902_Vox2VecPretraining" / f"{PLANS}.json").read_text())
    entry = pretraining_plans["configurations"][CONFIGURATION]
    assert entry["architecture"] == architecture and entry["normalization_schemes"] == ["NoNormalization"]
    assert entry["patch_size"] == labeled_plans["configurations"][CONFIGURATION]["patch_size"]
    assert pretraining_plans["foreground_intensity_properties_per_channel"] == \
        labeled_plans["foreground_intensity_properties_per_channel"]

    run(["nnUNetv2_train", PRETRAIN, CONFIGURATION, "all", "-p", PLANS, "-tr", "Vox2VecPretrainTrainer_UNet_Test",
         "-device", "cpu"], env)
    folder = results / "Dataset902_Vox2VecPretraining" / f"Vox2VecPretrainTrainer_UNet_Test__{PLANS}__{CONFIGURATION}"
    checkpoint = folder / "fold_all" / "checkpoint_final.pth"
    pretrained = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert all(np.isfinite(pretrained["logging"]["train_losses"]))
    weights = pretrained["network_weights"]
    assert any(k.startswith("projector.") for k in weights) and any(k.startswith("decoder.stages.") for k in weights)

    trainer = "nnUNetTrainer_Vox2VecFineTune_Test"  # one epoch: the decoder warm-up, encoder frozen
    fold, _ = train_from_pretrained(env, DATASET, CONFIGURATION, "0", PLANS, trainer, checkpoint)
    tuned = load_weights_file(fold / "checkpoint_final.pth", "nnU-Net's checkpoint")["network_weights"]
    encoder = [k for k in tuned if k.startswith(("encoder.", "decoder.encoder."))]
    assert encoder and all(torch.equal(tuned[k], weights[k]) for k in encoder)  # loaded, and truly frozen
    decoder = [k for k in tuned if k.startswith("decoder.stages.") and k.endswith(".weight")]
    assert decoder and any(not torch.equal(tuned[k], weights[k]) for k in decoder)  # loaded, then trained
    assert 0.0 <= json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"] <= 1.0

    # the benchmark: nnU-Net's U-Net setups on their plans, fine-tuned (fold 0 above, kept) beside the
    # control with the same schedule from random initialisation, in one table on nnU-Net's 5 folds
    out = run(["vox2vec_nnunet_benchmark", "-d", DATASET, "--setups", "unet_finetune", "unet_scratch_warmup",
               "--trainer_variant", "Test", "--folds", "5", "--fold_ids", "0", "--unet_plans", PLANS,
               "--unet_pretrained_weights", checkpoint, "--run", "-device", "cpu", "-o", tmp_path / "table"], env).stdout
    assert f"[unet_finetune fold 0] skip (finished): {fold}" in out
    control = results / "Dataset502_Phantoms" / f"nnUNetTrainer_Vox2VecScratchWarmup_Test__{PLANS}__{CONFIGURATION}"
    assert json.loads((control / "fold_0" / "vox2vec_run.json").read_text())["backbone_source"] == "random_init"
    table = (tmp_path / "table" / "dice_table.md").read_text()
    assert "| nnU-Net U-Net fine-tuned from vox2vec | pretrained |" in table
    assert "| nnU-Net U-Net from scratch, fine-tuning's warm-up | random_init |" in table

    predictions = tmp_path / "predictions"
    predict_on_cpu(env, raw / "imagesTs", predictions, DATASET, CONFIGURATION, PLANS, trainer, "0")
    for image_file in sorted((raw / "imagesTs").glob("*.nii.gz")):
        prediction = sitk.ReadImage(str(predictions / image_file.name.replace("_0000.nii.gz", ".nii.gz")))
        assert prediction.GetSize() == sitk.ReadImage(str(image_file)).GetSize()
