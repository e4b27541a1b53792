"""vox2vec on a 2-channel MR dataset through the real commands, on the CPU: plan (z-scoring, as
nnU-Net chooses for MR channel names) -> preprocess -> prepare (every channel, z-scored, unit-free
body masks) -> pre-train -> probe and fine-tune from the pre-trained weights -> predict with
both; CT and MR sources are not mixed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from mr_volumes import mr_volume, write_raw_dataset
from nnunet_cli import nnunet_env, predict_on_cpu, run, train_from_pretrained
from vox2vec_nnunet.weights import load_weights_file

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 503, 903
SPACING = ["4", "3", "3"]
PATCH = ["8", "16", "16"]
FPN = ["--base_channels", "4", "--num_levels", "3"]


def test_mr_plan_prepare_pretrain_probe_and_predict(tmp_path):
    env = nnunet_env(tmp_path)
    cases, labels = {}, {}
    for seed in range(7):
        t2, _, label = mr_volume(seed=seed, contrast="T2", scale=300.0 + 100 * seed)
        t1, _, _ = mr_volume(seed=seed, contrast="T1", scale=900.0)
        cases[f"mr{seed}"] = [t2, t1]
        if seed < 5:
            labels[f"mr{seed}"] = label
    raw = write_raw_dataset(Path(env["nnUNet_raw"]), DATASET, "MR", {"0": "T2", "1": "T1"}, cases, labels)
    pre, results = Path(env["nnUNet_preprocessed"]) / "Dataset503_MR", Path(env["nnUNet_results"])

    out = run(["vox2vec_nnunet_plan", "-d", DATASET, "--spacing", *SPACING, "--patch_size", *PATCH, "--batch_size",
               "2", *FPN, "-np", "1"], env).stdout
    assert "0 'T2' -> ZScoreNormalization, 1 'T1' -> ZScoreNormalization" in out
    configuration = json.loads((pre / "Vox2VecPlans.json").read_text())["configurations"]["3d_vox2vec"]
    assert configuration["normalization_schemes"] == ["ZScoreNormalization"] * 2
    data = np.asarray(nnUNetDatasetBlosc2(str(pre / "Vox2VecPlans_3d_vox2vec")).load_case("mr0")[0])
    assert data.shape[0] == 2 and np.abs(data.reshape(2, -1).mean(1)).max() < 0.05  # z-scored (then resampled)

    ct = tmp_path / "ct"
    ct.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 8, 8), -1000.0, np.float32)), str(ct / "ct.nii.gz"))
    refused = run(["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "--folders", ct, "-o", PRETRAIN], env,
                  expect_ok=False)
    assert "different channels" in refused.stderr and "not mixed" in refused.stderr

    out = run(["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "-o", PRETRAIN, "--spacing", *SPACING,
               "--patch_size", *PATCH, *FPN, "--num_positions", "64", "-np", "1"], env).stdout
    assert "7 prepared" in out and "0 'T2' -> ZScoreNormalization, 1 'T1' -> ZScoreNormalization" in out
    run(["nnUNetv2_train", PRETRAIN, "3d_vox2vec_pretrain", "all", "-p", "Vox2VecPlans", "-tr",
         "Vox2VecPretrainTrainer_Test", "-device", "cpu"], env)
    pretrained = (results / "Dataset903_Vox2VecPretraining" / "Vox2VecPretrainTrainer_Test__Vox2VecPlans__"
                  "3d_vox2vec_pretrain" / "fold_all" / "checkpoint_final.pth")
    checkpoint = torch.load(pretrained, map_location="cpu", weights_only=True)
    assert checkpoint["vox2vec"]["channel_names"] == {"0": "T2", "1": "T1"}
    assert checkpoint["network_weights"]["backbone.first_conv.weight"].shape[1] == 2
    assert all(np.isfinite(checkpoint["logging"]["train_losses"]))

    probe, finetune = "Vox2VecTrainer_LinearProbe_Test", "Vox2VecTrainer_FineTune_Test"
    runs = {trainer: train_from_pretrained(env, DATASET, "3d_vox2vec", "0", "Vox2VecPlans", trainer, pretrained)
            for trainer in (probe, finetune)}  # fold folder, training log
    for _, log in runs.values():
        assert "were pre-trained on {'0': 'T2', '1': 'T1'}; this dataset has {'0': 'T2', '1': 'T1'}" in log
    assert "adapted" not in runs[probe][1] and "NOTE" not in runs[probe][1]
    assert "vox2vec fine-tuning: backbone frozen for 2 of 6" in runs[finetune][1]
    tuned = load_weights_file(runs[finetune][0] / "checkpoint_final.pth", "nnU-Net's checkpoint")["network_weights"]
    start = checkpoint["network_weights"]["backbone.first_conv.weight"]
    assert tuned["backbone.first_conv.weight"].shape == start.shape  # 2 input channels
    assert not torch.equal(tuned["backbone.first_conv.weight"], start)  # unfrozen after 2 iterations: trained

    for trainer in (probe, finetune):
        predictions = tmp_path / f"predictions_{trainer}"
        predict_on_cpu(env, raw / "imagesTs", predictions, DATASET, "3d_vox2vec", "Vox2VecPlans", trainer, "0")
        for case in ("mr5", "mr6"):
            image = sitk.ReadImage(str(raw / "imagesTs" / f"{case}_0000.nii.gz"))
            prediction = sitk.ReadImage(str(predictions / f"{case}.nii.gz"))
            assert prediction.GetSize() == image.GetSize()
            assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2}
