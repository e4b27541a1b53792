"""The whole product through nnU-Net's real commands on a small phantom dataset, on the CPU.

One module-scoped workspace; the tests run in order and build on each other:
plan -> train two folds -> predict -> find_best_configuration, then pre-training data ->
pre-training (seeded; interrupted and resumed to the same weights) -> probing from a snapshot.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_cli import nnunet_env, predict_on_cpu, run, train_from_pretrained
from vox2vec_nnunet.phantoms import PhantomConfig, write_nnunet_raw_dataset
from vox2vec_nnunet.weights import load_weights_file

pytestmark = pytest.mark.slow

DATASET, PRETRAIN = 501, 900
SPACING = ["10", "8", "8"]  # coarse phantoms: (18, 32, 42) voxels
PATCH = ["8", "16", "16"]
FPN = ["--base_channels", "4", "--num_levels", "3"]
SEG = "Vox2VecTrainer_Test"
PRE = "Vox2VecPretrainTrainer_Test"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("nnunet")
    env = nnunet_env(root)
    raw = write_nnunet_raw_dataset(Path(env["nnUNet_raw"]), DATASET, "Phantoms", num_labeled=6, num_unlabeled=3,
                                   seed=0, config=PhantomConfig(spacing=(10.0, 8.0, 8.0)), progress=False)
    return {"root": root, "env": env, "raw": raw, "results": Path(env["nnUNet_results"]),
            "pre": Path(env["nnUNet_preprocessed"])}


def seg_folder(ws: dict, trainer: str) -> Path:
    return ws["results"] / "Dataset501_Phantoms" / f"{trainer}__Vox2VecPlans__3d_vox2vec"


def test_plan_writes_vox2vec_plans_and_preprocesses(ws):
    run(["nnUNetv2_extract_fingerprint", "-d", DATASET, "-np", "1"], ws["env"])
    out = run(["vox2vec_nnunet_plan", "-d", DATASET, "--spacing", *SPACING, "--patch_size", *PATCH,
               "--batch_size", "2", *FPN, "-np", "1"], ws["env"]).stdout
    assert "Vox2VecPlans.json" in out
    plans = json.loads((ws["pre"] / "Dataset501_Phantoms" / "Vox2VecPlans.json").read_text())
    cfg = plans["configurations"]["3d_vox2vec"]
    assert cfg["spacing"] == [10.0, 8.0, 8.0] and cfg["patch_size"] == [8, 16, 16] and cfg["batch_size"] == 2
    assert cfg["architecture"]["arch_kwargs"]["base_channels"] == 4
    assert len(list((ws["pre"] / "Dataset501_Phantoms" / "Vox2VecPlans_3d_vox2vec").glob("*.pkl"))) == 6


def test_train_two_folds_writes_checkpoints_and_dice_per_label(ws):
    for fold in ("0", "1"):
        run(["nnUNetv2_train", DATASET, "3d_vox2vec", fold, "-p", "Vox2VecPlans", "-tr", SEG, "-device", "cpu"],
            ws["env"])
    labels = json.loads((ws["raw"] / "dataset.json").read_text())["labels"]
    for fold in ("0", "1"):
        folder = seg_folder(ws, SEG) / f"fold_{fold}"
        assert (folder / "checkpoint_final.pth").is_file()
        assert not list(folder.glob(".*.tmp"))
        summary = json.loads((folder / "validation" / "summary.json").read_text())
        assert set(summary["mean"]) == {str(v) for k, v in labels.items() if k != "background"}
        assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0
        record = json.loads((folder / "vox2vec_run.json").read_text())
        assert record["backbone_source"] == "random_init"
        assert record["trainable_parameters"] == record["total_parameters"] > 0
        checkpoint = load_weights_file(folder / "checkpoint_final.pth", "nnU-Net's checkpoint")
        assert any(k.startswith("decoder.seg_layers.") for k in checkpoint["network_weights"])


def test_predict_keeps_the_input_geometry(ws):
    out = ws["root"] / "predictions"
    predict_on_cpu(ws["env"], ws["raw"] / "imagesTs", out, DATASET, "3d_vox2vec", "Vox2VecPlans", SEG, "0", "1")
    images = sorted((ws["raw"] / "imagesTs").glob("*.nii.gz"))
    assert len(images) == 3
    for image_file in images:
        prediction = sitk.ReadImage(str(out / image_file.name.replace("_0000.nii.gz", ".nii.gz")))
        image = sitk.ReadImage(str(image_file))
        assert prediction.GetSize() == image.GetSize()
        assert np.allclose(prediction.GetSpacing(), image.GetSpacing())
        assert np.allclose(prediction.GetOrigin(), image.GetOrigin())
        assert np.allclose(prediction.GetDirection(), image.GetDirection())


def test_find_best_configuration_ranks_the_vox2vec_model(ws):
    out = run(["nnUNetv2_find_best_configuration", DATASET, "-c", "3d_vox2vec", "-p", "Vox2VecPlans", "-tr", SEG,
               "-f", "0", "1", "--disable_ensembling", "-np", "1"], ws["env"]).stdout
    assert f"{SEG}__Vox2VecPlans__3d_vox2vec" in out
    assert (ws["results"] / "Dataset501_Phantoms" / "inference_information.json").is_file()


def test_benchmark_repeats_a_fold_in_a_results_root_of_its_own(ws):
    """--repeats 2: fold 0 (trained above) is run 1 and is kept; run 2 trains it again under
    vox2vec_repeats/run2, given to nnUNetv2_train as its nnUNet_results; the table counts the
    fold once, as the mean of its two runs, with their spread."""
    regular = seg_folder(ws, SEG) / "fold_0"
    before = (regular / "checkpoint_final.pth").stat().st_mtime_ns
    out = run(["vox2vec_nnunet_benchmark", "-d", DATASET, "--setups", "scratch", "--trainer_variant", "Test",
               "--folds", "5", "--fold_ids", "0", "--repeats", "2", "--run", "-device", "cpu",
               "-o", ws["root"] / "repeats"], ws["env"]).stdout
    assert f"[scratch fold 0, run 1] skip (finished): {regular}" in out
    again = (ws["results"] / "Dataset501_Phantoms" / "vox2vec_repeats" / "run2" / "Dataset501_Phantoms"
             / f"{SEG}__Vox2VecPlans__3d_vox2vec" / "fold_0")
    assert (again / "checkpoint_final.pth").is_file() and (again / "validation" / "summary.json").is_file()
    assert (regular / "checkpoint_final.pth").stat().st_mtime_ns == before
    runs = [json.loads((folder / "validation" / "summary.json").read_text())["mean"] for folder in (regular, again)]
    per_run = [np.mean([label["Dice"] for label in dice.values()]) for dice in runs]
    with (ws["root"] / "repeats" / "dice_table.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["runs_per_fold"] == "0:2" and row["num_folds"] == "1"
    assert float(row["mean_dice_mean"]) == pytest.approx(np.mean(per_run))
    assert float(row["run_to_run_std"]) == pytest.approx(np.std(per_run, ddof=1))


def test_benchmark_selects_the_learning_rate_of_a_fold_on_an_inner_split(ws):
    """--select_lr --lr_grid 1e-3 1e-2, from scratch, fold 0: an inner split of fold 0's training
    cases, one run per value with VOX2VEC_LEARNING_RATE in its own results root, the final run at
    the better value under vox2vec_selection/selected (the regular folder untouched), the table
    saying which; a rerun trains nothing."""
    args = ["vox2vec_nnunet_benchmark", "-d", DATASET, "--setups", "scratch", "--trainer_variant", "Test",
            "--folds", "5", "--fold_ids", "0", "--select_lr", "--lr_grid", "1e-3", "1e-2", "--run", "-device", "cpu",
            "-o", ws["root"] / "selection"]
    regular = seg_folder(ws, SEG) / "fold_0"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in regular.rglob("*")) if regular.exists() else None
    out = run(args, ws["env"]).stdout
    assert "inner runs: 2 (0 finished, 2 to train)" in out and "final runs: 1 (0 finished, 1 to train)" in out
    preprocessed = ws["pre"] / "Dataset501_Phantoms"
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    (entry,) = json.loads((preprocessed / "vox2vec_lr_selection.json").read_text())["splits"]
    assert (entry["fold"], entry["num_labeled"]) == (0, None) and entry["fold_index"] >= 5
    inner = splits[entry["fold_index"]]
    assert set(inner["train"]) | set(inner["val"]) == set(splits[0]["train"])
    assert not set(inner["train"]) & set(inner["val"]) and not set(inner["val"]) & set(splits[0]["val"])
    selection = ws["results"] / "Dataset501_Phantoms" / "vox2vec_selection"
    dice = {}
    for lr in (1e-3, 1e-2):
        fold = selection / f"lr{lr:g}" / "Dataset501_Phantoms" / seg_folder(ws, SEG).name / f"fold_{entry['fold_index']}"
        record = json.loads((fold / "vox2vec_run.json").read_text())
        assert (record["initial_lr"], record["learning_rate_source"]) == (lr, "VOX2VEC_LEARNING_RATE")
        dice[lr] = json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"]
    chosen = max(sorted(dice), key=lambda lr: dice[lr])  # equal Dice: the smaller value
    final = selection / "selected" / "Dataset501_Phantoms" / seg_folder(ws, SEG).name / "fold_0"
    assert json.loads((final / "vox2vec_run.json").read_text())["initial_lr"] == chosen
    assert (final / "validation" / "summary.json").is_file()
    with (ws["root"] / "selection" / "dice_table.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["learning_rate"], row["learning_rate_mode"]) == (f"selected: f0 {chosen:g}", "selected")
    assert f"| selected: f0 {chosen:g} | 1 | 1 |" in (ws["root"] / "selection" / "dice_table.md").read_text()
    with (ws["root"] / "selection" / "lr_selection.csv").open() as f:
        (choice,) = list(csv.DictReader(f))
    assert float(choice["chosen_lr"]) == chosen
    assert f"nnUNet_results={selection / 'selected'} nnUNetv2_predict -d Dataset501_Phantoms" in out
    after = sorted((p.name, p.stat().st_mtime_ns) for p in regular.rglob("*")) if regular.exists() else None
    assert after == before

    again = run(args, ws["env"]).stdout
    assert "inner runs: 2 (2 finished, 0 to train)" in again and "final runs: 1 (1 finished, 0 to train)" in again
    assert again.count("skip (finished)") == 3 and "] $ " not in again  # no nnUNetv2_train started


def test_wrong_plans_and_missing_weights_get_clear_messages(ws):
    result = run(["nnUNetv2_train", DATASET, "3d_vox2vec", "0", "-p", "Vox2VecPlans", "-device", "cpu",
                  "-tr", "Vox2VecTrainer_LinearProbe_Test"], ws["env"], expect_ok=False)
    assert "no -pretrained_weights were given" in result.stderr and "Traceback" not in result.stderr
    bad = ws["root"] / "not_a_checkpoint.pth"
    bad.write_bytes(b"this is not a torch file")
    result = run(["nnUNetv2_train", DATASET, "3d_vox2vec", "0", "-p", "Vox2VecPlans", "-device", "cpu",
                  "-tr", SEG, "-pretrained_weights", bad], ws["env"], expect_ok=False)
    assert str(bad) in result.stderr and "weights_only=True" in result.stderr and "Traceback" not in result.stderr


def _write_ct(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((8.0, 8.0, 10.0))  # (x, y, z): the test plans' spacing, no resampling
    sitk.WriteImage(image, str(path))


def test_prepare_pretraining_skips_bad_scans_keeps_small_ones_and_resumes(ws):
    folder = ws["root"] / "more_ct"
    folder.mkdir()
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    nan = np.zeros((20, 40, 40), np.float32)
    nan[5, 5, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(folder / "nan.mha"))
    _, y, x = np.indices((4, 30, 30))
    short = np.where(((y - 15) / 12) ** 2 + ((x - 15) / 11) ** 2 <= 1, 40.0, -1000.0)  # 4 slices: patch has 8
    _write_ct(short, folder / "short.mha")
    speck = np.full((20, 40, 40), -1000.0)
    speck[8:11, 18:21, 18:21] = 40.0  # a body of 27 voxels: fewer than the trainer's m = 64
    _write_ct(speck, folder / "speck.mha")
    args = ["vox2vec_nnunet_prepare_pretraining", "-d", DATASET, "--folders", folder, "-o", PRETRAIN,
            "--spacing", *SPACING, "--patch_size", *PATCH, *FPN, "--num_positions", "64", "-np", "1"]
    out = run(args, ws["env"]).stdout
    assert "10 prepared" in out and "3 skipped" in out
    assert "broken.nii.gz: cannot be read" in out and "nan.mha: holds NaN" in out
    assert "speck.mha: its body has 27 voxels" in out and "fewer than the m = 64 distinct positions" in out
    data = ws["pre"] / "Dataset900_Vox2VecPretraining" / "Vox2VecPlans_3d_vox2vec_pretrain"
    assert len(list(data.glob("*.pkl"))) == 10 and len(list(data.glob("*_seg.b2nd"))) == 10
    report = json.loads((data.parent / "vox2vec_preparation_report.json").read_text())
    kept = [c for c in report["cases"] if c["image_file"].endswith("short.mha")]
    assert kept[0]["status"] == "done" and kept[0]["shape"][0] < int(PATCH[0])  # kept, shorter than the patch
    out = run(args, ws["env"]).stdout
    assert "0 prepared, 10 already done, 3 skipped" in out


def pretraining_folder(results: Path, trainer: str) -> Path:
    return results / "Dataset900_Vox2VecPretraining" / f"{trainer}__Vox2VecPlans__3d_vox2vec_pretrain" / "fold_all"


def test_pretraining_is_seeded_resumes_exactly_and_loads_into_a_probe(ws):
    """Seed 0 twice: once uninterrupted (its own results folder), once killed after its first
    checkpoint and resumed with --c: the same final weights, bit for bit (that another seed
    gives other weights: test_pretrain_trainer). Snapshots every epoch; a probe trains from one."""
    env = ws["env"]

    def cmd(trainer: str) -> list[str]:
        return ["nnUNetv2_train", str(PRETRAIN), "3d_vox2vec_pretrain", "all", "-p", "Vox2VecPlans", "-tr", trainer,
                "-device", "cpu"]

    uninterrupted_results = ws["root"] / "results_uninterrupted"
    run(cmd(PRE), dict(env, nnUNet_results=str(uninterrupted_results)))

    folder = pretraining_folder(ws["results"], PRE)
    process = subprocess.Popen(cmd(PRE), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 600
    while not (folder / "checkpoint_latest.pth").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the trainer and its data workers, like a crash
    process.wait()
    assert (folder / "checkpoint_latest.pth").exists() and not (folder / "checkpoint_final.pth").exists()
    run(cmd(PRE) + ["--c"], env)
    final = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    losses = final["logging"]["train_losses"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert {"positive_cosine", "negative_cosine", "lrs"} <= set(final["logging"])
    assert (folder / "progress.png").stat().st_size > 0
    assert any(k.startswith("projector.") for k in final["network_weights"])
    assert final["vox2vec"] == {"seed": 0, "iteration": 12, "epoch": 3, "channel_names": {"0": "CT"}}
    logs = [f.read_text() for f in sorted(folder.glob("training_log_*.txt"))]
    assert "vox2vec pre-training seed: 0 (the trainer's seed attribute)" in logs[0]
    assert "vox2vec pre-training seed: 0 (from the checkpoint)" in logs[-1]

    uninterrupted = torch.load(pretraining_folder(uninterrupted_results, PRE) / "checkpoint_final.pth",
                               map_location="cpu", weights_only=True)
    assert uninterrupted["logging"]["train_losses"] == losses
    weights = final["network_weights"]
    assert set(uninterrupted["network_weights"]) == set(weights)
    assert all(torch.equal(v, weights[k]) for k, v in uninterrupted["network_weights"].items())

    snapshots = sorted((folder / "snapshots").glob("*.pth"))
    assert [s.name for s in snapshots] == [f"checkpoint_iter_{i:07d}.pth" for i in (4, 8, 12)]
    records = [torch.load(s, map_location="cpu", weights_only=True) for s in snapshots]
    assert [r["vox2vec"] for r in records] == [{"seed": 0, "iteration": 4 * e, "epoch": e,
                                                   "channel_names": {"0": "CT"}} for e in (1, 2, 3)]
    assert all(torch.equal(v, weights[k]) for k, v in records[-1]["network_weights"].items())
    assert not list((pretraining_folder(uninterrupted_results, PRE) / "snapshots").glob(".*.tmp"))

    probe = "Vox2VecTrainer_LinearProbe_Test"
    fold, log = train_from_pretrained(env, DATASET, "3d_vox2vec", "0", "Vox2VecPlans", probe, snapshots[1])
    record = json.loads((fold / "vox2vec_run.json").read_text())
    assert record["trainable_parameters"] < record["total_parameters"]
    probed = load_weights_file(fold / "checkpoint_final.pth", "nnU-Net's checkpoint")["network_weights"]
    backbone = {k: v for k, v in records[1]["network_weights"].items() if k.startswith("backbone.")}
    assert backbone and all(torch.equal(probed[k], v) for k, v in backbone.items())
    assert "backbone from PRE-TRAINED weights" in log
