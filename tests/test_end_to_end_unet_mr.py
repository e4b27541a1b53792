"""vox2vec for nnU-Net's own U-Nets on a two-channel MR dataset through the real commands, on the
CPU: synthetic MR volumes (T2, T1) -> nnU-Net's ResEnc planner (z-scoring both channels) ->
prepared unlabeled scans -> pre-training of the U-Net -> fine-tuning from it -> nnUNetv2_predict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from mr_volumes import mr_volume, write_raw_dataset
from nnunet_cli import nnunet_env, predict_on_cpu, run, train_from_pretrained
from vox2vec_nnunet.weights import load_weights_file

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 505, 905
PLANS, CONFIGURATION = "nnUNetResEncUNetTinyPlans", "3d_fullres"
CHANNELS = {"0": "T2", "1": "T1"}


def test_pretrain_the_resenc_unet_on_two_channel_mr_finetune_it_and_predict(tmp_path):
    env = nnunet_env(tmp_path)
    cases, labels = {}, {}
    for seed in range(6):  # 5 labeled (nnU-Net's 5 folds), 1 unlabeled
        t2, _, label = mr_volume(seed=seed, contrast="T2", scale=300.0 + 100 * seed)
        t1, _, _ = mr_volume(seed=seed, contrast="T1", scale=900.0)
        cases[f"mr{seed}"] = [t2, t1]
        if seed < 5:
            labels[f"mr{seed}"] = label
    raw = write_raw_dataset(Path(env["nnUNet_raw"]), DATASET, "MRUNet", CHANNELS, cases, labels)
    pre, results = Path(env["nnUNet_preprocessed"]), Path(env["nnUNet_results"])
    # nnU-Net's ResEnc M planner, made small for the CPU: a 0.02 GB GPU memory target and a coarse spacing
    run(["nnUNetv2_plan_and_preprocess", "-d", DATASET, "-pl", "nnUNetPlannerResEncM", "-gpu_memory_target", "0.02",
         "-overwrite_target_spacing", "8", "6", "6", "-overwrite_plans_name", PLANS, "-c", CONFIGURATION,
         "-np", "1", "-npfp", "1"], env)
    labeled = json.loads((pre / "Dataset505_MRUNet" / f"{PLANS}.json").read_text())["configurations"][CONFIGURATION]
    assert labeled["normalization_schemes"] == ["ZScoreNormalization"] * 2  # nnU-Net's choice for MR names

    out = run(["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "-o", PRETRAIN, "--plans", PLANS,
               "--configuration", CONFIGURATION, "--plans_dataset", DATASET, "--num_positions", "64", "-np", "1"],
              env).stdout
    assert "6 prepared, 0 already done, 0 skipped of 6" in out
    assert "0 'T2' -> ZScoreNormalization, 1 'T1' -> ZScoreNormalization" in out
    entry = json.loads((pre / "Dataset905_Vox2VecPretraining" / f"{PLANS}.json").read_text())["configurations"][
        CONFIGURATION]
    assert entry["normalization_schemes"] == ["ZScoreNormalization"] * 2  # stored z-scored, as nnU-Net feeds them
    assert entry["use_mask_for_norm"] == labeled["use_mask_for_norm"]

    run(["nnUNetv2_train", PRETRAIN, CONFIGURATION, "all", "-p", PLANS, "-tr", "Vox2VecPretrainTrainer_UNet_Test",
         "-device", "cpu"], env)
    checkpoint = (results / "Dataset905_Vox2VecPretraining" / f"Vox2VecPretrainTrainer_UNet_Test__{PLANS}__"
                  f"{CONFIGURATION}" / "fold_all" / "checkpoint_final.pth")
    pretrained = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert pretrained["vox2vec"]["channel_names"] == CHANNELS
    losses = pretrained["logging"]["train_losses"]
    assert len(losses) == 2 and all(np.isfinite(losses))
    stem = [v for k, v in pretrained["network_weights"].items() if k.startswith("encoder.stem") and v.ndim == 5]
    assert stem and stem[0].shape[1] == 2  # the encoder's first convolution takes both channels

    trainer = "nnUNetTrainer_Vox2VecFineTune_Test"
    fold, log = train_from_pretrained(env, DATASET, CONFIGURATION, "0", PLANS, trainer, checkpoint)
    assert f"were pre-trained on {CHANNELS}; this dataset has {CHANNELS}" in log
    assert "network from PRE-TRAINED weights" in log and "adapted" not in log and "NOTE" not in log
    tuned = load_weights_file(fold / "checkpoint_final.pth", "nnU-Net's checkpoint")["network_weights"]
    encoder = [k for k in tuned if k.startswith("encoder.")]
    assert encoder and all(torch.equal(tuned[k], pretrained["network_weights"][k]) for k in encoder)  # loaded, frozen

    predictions = tmp_path / "predictions"
    predict_on_cpu(env, raw / "imagesTs", predictions, DATASET, CONFIGURATION, PLANS, trainer, "0")
    image = sitk.ReadImage(str(raw / "imagesTs" / "mr5_0000.nii.gz"))
    prediction = sitk.ReadImage(str(predictions / "mr5.nii.gz"))
    assert prediction.GetSize() == image.GetSize()
    assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2}
