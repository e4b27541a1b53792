"""Two-channel MR phantoms through the real commands: vox2vec_nnunet_phantoms --modality mr ->
vox2vec_nnunet_plan (nnU-Net z-scores both channels) -> vox2vec_nnunet_prepare_pretraining (every
case prepared, none skipped)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_cli import nnunet_env, run

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 504, 904
SPACING = ["8", "4", "4"]
PATCH = ["8", "16", "16"]
FPN = ["--base_channels", "4", "--num_levels", "3"]


def test_mr_phantoms_plan_and_prepare(tmp_path):
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
