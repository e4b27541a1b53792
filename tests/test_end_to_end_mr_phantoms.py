"""Two-channel MR phantoms through the real commands: vox2vec_nnunet_phantoms --modality mr ->
vox2vec_nnunet_plan (nnU-Net z-scores both channels) -> vox2vec_nnunet_prepare_pretraining (every
case prepared, none skipped) -> pre-training -> fine-tuning from it -> nnUNetv2_predict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_cli import nnunet_env, predict_on_cpu, run, train_from_pretrained
from vox2vec_nnunet.weights import load_weights_file

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 504, 904
SPACING = ["8", "4", "4"]
PATCH = ["8", "16", "16"]
FPN = ["--base_channels", "4", "--num_levels", "3"]


def test_mr_phantoms_plan_prepare_pretrain_finetune_and_predict(tmp_path):
    env = nnunet_env(tmp_path)
    run(["python", "-m", "vox2vec_nnunet.commands.phantoms", "-d", DATASET, "-n", "3", "--unlabeled", "1",
         "--modality", "mr", "--channels", "t1", "t2", "--downsample", "2", "--name", "MRPhantoms", "--no_pbar"], env)
    raw = Path(env["nnUNet_raw"]) / "Dataset504_MRPhantoms"
    assert json.loads((raw / "dataset.json").read_text())["channel_names"] == {"0": "T1", "1": "T2"}

    out = run(["vox2vec_nnunet_plan", "-d", DATASET, "--spacing", *SPACING, "--patch_size", *PATCH, "--batch_size",
               "2", *FPN, "-np", "1"], env).stdout
    assert "0 'T1' -> ZScoreNormalization, 1 'T2' -> ZScoreNormalization" in out
    plans = json.loads((Path(env["nnUNet_preprocessed"]) / "Dataset504_MRPhantoms" / "Vox2VecPlans.json").read_text())
    assert plans["configurations"]["3d_vox2vec"]["normalization_schemes"] == ["ZScoreNormalization"] * 2

    out = run(["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "-o", PRETRAIN, "--spacing", *SPACING,
               "--patch_size", *PATCH, *FPN, "--num_positions", "64", "-np", "1"], env).stdout
    assert "4 prepared, 0 already done, 0 skipped of 4" in out
    report = json.loads((Path(env["nnUNet_preprocessed"]) / "Dataset904_Vox2VecPretraining"
                         / "vox2vec_preparation_report.json").read_text())
    assert [case["status"] for case in report["cases"]] == ["done"] * 4
    assert report["settings"]["channel_names"] == ["T1", "T2"]
    assert report["settings"]["normalization_schemes"] == ["ZScoreNormalization"] * 2

    run(["nnUNetv2_train", PRETRAIN, "3d_vox2vec_pretrain", "all", "-p", "Vox2VecPlans", "-tr",
         "Vox2VecPretrainTrainer_Test", "-device", "cpu"], env)
    results = Path(env["nnUNet_results"])
    pretrained = (results / "Dataset904_Vox2VecPretraining" / "Vox2VecPretrainTrainer_Test__Vox2VecPlans__"
                  "3d_vox2vec_pretrain" / "fold_all" / "checkpoint_final.pth")
    checkpoint = load_weights_file(pretrained, "the pre-training checkpoint")
    assert checkpoint["vox2vec"]["channel_names"] == {"0": "T1", "1": "T2"}
    assert all(np.isfinite(checkpoint["logging"]["train_losses"]))

    finetune = "Vox2VecTrainer_FineTune_Test"  # fold "all": 3 labeled cases are too few for 5 folds
    _, log = train_from_pretrained(env, DATASET, "3d_vox2vec", "all", "Vox2VecPlans", finetune, pretrained)
    assert "were pre-trained on {'0': 'T1', '1': 'T2'}; this dataset has {'0': 'T1', '1': 'T2'}" in log

    predictions = tmp_path / "predictions"
    predict_on_cpu(env, raw / "imagesTs", predictions, DATASET, "3d_vox2vec", "Vox2VecPlans", finetune, "all")
    (image_file,) = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
    prediction = sitk.ReadImage(str(predictions / image_file.name.replace("_0000.nii.gz", ".nii.gz")))
    assert prediction.GetSize() == sitk.ReadImage(str(image_file)).GetSize()
    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= set(labels.values())
