"""The benchmark (paper Table 1/2, Fig. 2): collection, statistics, splits and resume logic.

Results trees are written by hand in nnU-Net's layout; the expected table numbers are computed
by hand in the comments below, not by the code under test. No training runs here.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from nnunetv2.utilities.crossval_split import generate_crossval_split

from vox2vec_nnunet.benchmark.layout import ResultsLayout
from vox2vec_nnunet.benchmark.runner import (Action, Job, check_weights, decide_action, run_jobs,
                                             train_command)
from vox2vec_nnunet.training.setups import SETUPS
from vox2vec_nnunet.benchmark.splits import (LABEL_EFFICIENCY_FILE, SPLITS_FILE, SplitsError,
                                             ensure_label_efficiency_splits, ensure_regular_splits,
                                             read_splits, training_identifiers)
from vox2vec_nnunet.commands.benchmark import main
from vox2vec_nnunet.errors import Vox2VecError

DATASET = "Dataset042_Fake"
PLANS, CONFIG = "Vox2VecPlans", "3d_vox2vec"
LABELS = {"background": 0, "liver": 1, "spleen": 2}


def _trainer_dir(results: Path, trainer: str, plans: str = PLANS, configuration: str = CONFIG) -> Path:
    return results / DATASET / f"{trainer}__{plans}__{configuration}"


def _write_fold(results: Path, setup: str, fold: int, liver: float | None, spleen: float | None,
                params: int, source: str | None = None, summary: bool = True,
                record: bool = True, plans: str = PLANS, configuration: str = CONFIG,
                lr: float | None = 3e-4, lr_source: str = "budget base") -> Path:
    """One fold folder as nnU-Net and our trainers leave it (``lr`` None: a run record from before
    the trainers recorded their learning rate)."""
    trainer = SETUPS[setup].trainer
    tdir = _trainer_dir(results, trainer, plans, configuration)
    fold_dir = tdir / f"fold_{fold}"
    (fold_dir / "validation").mkdir(parents=True)
    (tdir / "dataset.json").write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    (fold_dir / "checkpoint_final.pth").write_bytes(b"")
    if summary:
        per_label = {"1": {"Dice": liver, "IoU": 0.0}, "2": {"Dice": spleen, "IoU": 0.0}}
        (fold_dir / "validation" / "summary.json").write_text(json.dumps({
            "foreground_mean": {"Dice": (liver + spleen) / 2, "IoU": 0.0},
            "mean": per_label,
            "metric_per_case": [{"metrics": per_label, "prediction_file": "p.nii.gz",
                                 "reference_file": "r.nii.gz"}]}))
    if record:
        (fold_dir / "vox2vec_run.json").write_text(json.dumps({
            "trainer": trainer,
            "backbone_source": source or SETUPS[setup].expected_backbone_source,
            "pretrained_weights": "/w/fpn.pth" if SETUPS[setup].needs_weights else None,
            "trainable_parameters": params, "total_parameters": 47_624_448 + params,
            "num_iterations": 45000, "batch_size": 7,
            **({} if lr is None else {"initial_lr": lr, "learning_rate_source": lr_source})}))
    return fold_dir


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_results", "nnUNet_preprocessed")}
    for name, path in paths.items():
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    return paths


@pytest.fixture
def results_tree(env: dict[str, Path]) -> Path:
    r = env["nnUNet_results"]
    # scratch, 3 folds: liver .90 .80 .85 -> mean .85, sample std sqrt((.05²+.05²+0)/2) = .05
    #                   spleen .70 .60 .80 -> mean .70, std sqrt((0+.1²+.1²)/2) = .10
    #   mean over labels per fold .80 .70 .825 -> mean .775,
    #   std sqrt((.025² + .075² + .05²)/2) = sqrt(.004375) = .0661438
    for fold, (liver, spleen) in enumerate([(0.90, 0.70), (0.80, 0.60), (0.85, 0.80)]):
        _write_fold(r, "scratch", fold, liver, spleen, params=48_592_477)
    # linear probe: folds 0, 1; fold 2 trained but not validated (no summary.json)
    #   liver .6 .7 -> .65 ± .0707107, spleen .5 .4 -> .45 ± .0707107, per fold .55 .55 -> .55 ± 0
    #   at its own learning rate, 3e-3
    for fold, (liver, spleen) in enumerate([(0.6, 0.5), (0.7, 0.4), (None, None)]):
        _write_fold(r, "linear_probe", fold, liver, spleen, params=13_117, lr=3e-3, lr_source="budget Demo",
                    summary=fold < 2)
    # random-FPN non-linear probe: fold 0 only -> liver .5, spleen .3, mean .4, std n/a; an older
    #   run record without the learning rate
    _write_fold(r, "nonlinear_probe_random", 0, 0.5, 0.3, params=968_029, lr=None)
    return r


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row["setup"]: row for row in csv.DictReader(f)}


def test_table_numbers_files_and_missing_folds(results_tree: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["-d", "42", "--setups", "scratch", "linear_probe", "nonlinear_probe_random",
                 "finetune", "--folds", "3", "-o", str(out)])
    assert code == 0
    rows = _read_csv(out / "dice_table.csv")
    assert list(rows) == ["scratch", "linear_probe", "nonlinear_probe_random"]  # finetune: none
    expected = {
        "scratch": {"liver_dice_mean": 0.85, "liver_dice_std": 0.05, "spleen_dice_mean": 0.70,
                    "spleen_dice_std": 0.10, "mean_dice_mean": 0.775,
                    "mean_dice_std": 0.0661438, "num_folds": 3,
                    "trainable_parameters": 48_592_477},
        "linear_probe": {"liver_dice_mean": 0.65, "liver_dice_std": 0.0707107,
                         "spleen_dice_mean": 0.45, "spleen_dice_std": 0.0707107,
                         "mean_dice_mean": 0.55, "mean_dice_std": 0.0, "num_folds": 2,
                         "trainable_parameters": 13_117},
        "nonlinear_probe_random": {"liver_dice_mean": 0.5, "spleen_dice_mean": 0.3,
                                   "mean_dice_mean": 0.4, "num_folds": 1,
                                   "trainable_parameters": 968_029},
    }
    for setup, values in expected.items():
        for key, value in values.items():
            assert float(rows[setup][key]) == pytest.approx(value, abs=1e-6), (setup, key)
    assert rows["nonlinear_probe_random"]["mean_dice_std"] == ""  # one fold: no std
    assert rows["nonlinear_probe_random"]["backbone_source"] == "random_init"
    assert rows["linear_probe"]["backbone_source"] == "pretrained"
    assert rows["scratch"]["num_iterations"] == "45000" and rows["scratch"]["batch_size"] == "7"

    md = (out / "dice_table.md").read_text()
    scratch_line = next(line for line in md.splitlines() if line.startswith("| from scratch"))
    assert scratch_line == ("| from scratch | random_init | 48,592,477 | 45,000 × 7 | 0.0003 (budget base) | 3 | 1 | "
                            "85.0 ± 5.0 | 70.0 ± 10.0 | 77.5 ± 6.6 | — | — | — | — |")
    # paired with scratch's per-fold means .80 .70 (.825): linear .55-.80, .55-.70 = -.25, -.15
    #   -> -.20 ± sqrt((.05² + .05²)/1) = .0707107; 95% interval -.20 ± t(.975, 1) .0707107 / sqrt(2)
    #   = -.20 ± 12.7062 × .05 = [-.83531, .43531]: holds 0, level
    #   random FPN fold 0 only: .4 - .8 = -.4, no std, no interval
    assert "| linear probing | pretrained | 13,117 | 45,000 × 7 | 0.003 (budget Demo) | 2 | 1 | 65.0 ± 7.1 | " \
           "45.0 ± 7.1 | 55.0 ± 0.0 | f0 -25.0, f1 -15.0 | -20.0 ± 7.1 | [-83.5, +43.5] | level |" in md
    assert "| non-linear probing, random FPN | random_init | 968,029 | 45,000 × 7 | unrecorded | 1 | 1 |" in md
    assert "| 40.0 ± n/a | f0 -40.0 | -40.0 ± n/a | n/a | n/a |" in md
    assert rows["linear_probe"]["paired_reference"] == "scratch"
    assert rows["linear_probe"]["paired_diff_per_fold"] == f"0:{-0.25!r} 1:{0.55 - 0.7!r}"
    assert float(rows["linear_probe"]["paired_diff_mean"]) == pytest.approx(-0.2)
    assert float(rows["linear_probe"]["paired_diff_std"]) == pytest.approx(0.0707107, abs=1e-6)
    assert float(rows["linear_probe"]["paired_diff_ci95_low"]) == pytest.approx(-0.83531, abs=1e-5)
    assert float(rows["linear_probe"]["paired_diff_ci95_high"]) == pytest.approx(0.43531, abs=1e-5)
    assert rows["linear_probe"]["paired_reading"] == "level"
    assert (rows["linear_probe"]["learning_rate"], rows["linear_probe"]["learning_rate_mode"],
            rows["linear_probe"]["learning_rate_per_fold"]) == ("0.003 (budget Demo)", "fixed", "0:0.003 1:0.003")
    assert (rows["nonlinear_probe_random"]["learning_rate_mode"],
            rows["nonlinear_probe_random"]["learning_rate_per_fold"]) == ("unrecorded", "0:")
    assert rows["nonlinear_probe_random"]["paired_diff_std"] == ""
    assert rows["nonlinear_probe_random"]["paired_reading"] == "n/a"
    assert rows["scratch"]["paired_reference"] == rows["scratch"]["paired_diff_mean"] == ""
    # missing folds: which setup, which fold, which file
    assert "linear_probe, fold 2: no validation result, missing validation/summary.json" in md
    assert str(_trainer_dir(results_tree, "Vox2VecTrainer_LinearProbe") / "fold_2" /
               "validation" / "summary.json") in md
    assert "nonlinear_probe_random, fold 1: fold not trained (folder missing)" in md
    assert "finetune: no finished folds, left out of the table" in md

    png = out / "dice_vs_parameters.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something was drawn

    printed = capsys.readouterr().out
    assert scratch_line in printed and str(out / "dice_table.csv") in printed
    assert "random baseline: non-linear probing, random FPN = " \
           "Vox2VecTrainer_NonLinearProbe_RandomInit" in printed


def test_fpn_and_unet_setups_in_one_table_each_paired_with_scratch_on_its_network(
        results_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    unet = ("nnUNetResEncUNetMPlans", "3d_fullres")
    # U-Net from scratch per fold (.6+.4)/2 = .5, .6, .5; fine-tuned .7, .7, .6
    #   paired +.2 +.1 +.1 -> +.1333 ± sqrt((.0667² + 2 × .0333²)/2) = .057735
    for fold, (liver, spleen) in enumerate([(0.6, 0.4), (0.7, 0.5), (0.5, 0.5)]):
        _write_fold(results_tree, "unet_scratch", fold, liver, spleen, params=4_000_000, plans=unet[0],
                    configuration=unet[1])
    for fold, (liver, spleen) in enumerate([(0.8, 0.6), (0.7, 0.7), (0.6, 0.6)]):
        _write_fold(results_tree, "unet_finetune", fold, liver, spleen, params=4_000_000, plans=unet[0],
                    configuration=unet[1])
    out = tmp_path / "out"
    setups = ["scratch", "linear_probe", "unet_scratch", "unet_finetune"]
    assert main(["-d", DATASET, "--setups", *setups, "--folds", "3", "-o", str(out)]) == 2
    assert "pass --unet_plans" in capsys.readouterr().err
    assert main(["-d", DATASET, "--setups", *setups, "--folds", "3", "-o", str(out), "--unet_plans", unet[0]]) == 0
    rows = _read_csv(out / "dice_table.csv")
    assert list(rows) == setups
    assert rows["unet_finetune"]["paired_reference"] == "unet_scratch"
    assert float(rows["unet_finetune"]["paired_diff_mean"]) == pytest.approx(0.4 / 3)
    assert float(rows["unet_finetune"]["paired_diff_std"]) == pytest.approx(0.057735, abs=1e-6)
    assert rows["linear_probe"]["paired_reference"] == "scratch"  # the FPN's from scratch, not the U-Net's
    assert float(rows["linear_probe"]["paired_diff_mean"]) == pytest.approx(-0.2)
    assert rows["unet_scratch"]["paired_diff_mean"] == ""
    md = (out / "dice_table.md").read_text()
    assert "| nnU-Net U-Net fine-tuned from vox2vec | pretrained | 4,000,000 |" in md
    assert "f0 +20.0, f1 +10.0, f2 +10.0 | +13.3 ± 5.8 |" in md
    assert f"{DATASET}, {PLANS}/{CONFIG} and {unet[0]}/{unet[1]}, folds [0, 1, 2] of 3" in capsys.readouterr().out


def test_inconsistent_run_records_are_reported(env: dict[str, Path], tmp_path: Path) -> None:
    r = env["nnUNet_results"]
    _write_fold(r, "nonlinear_probe", 0, 0.8, 0.6, params=968_029)
    _write_fold(r, "nonlinear_probe", 1, 0.7, 0.5, params=1_000, source="random_init")
    _write_fold(r, "nonlinear_probe", 2, 0.7, 0.5, params=968_029, record=False)
    out = tmp_path / "out"
    assert main(["-d", DATASET, "--setups", "nonlinear_probe", "--folds", "3", "-o", str(out)]) == 0
    md = (out / "dice_table.md").read_text()
    assert "nonlinear_probe: folds disagree on trainable parameters (fold 0: 968029, " \
           "fold 1: 1000)" in md
    assert "nonlinear_probe, fold 1: backbone source is 'random_init', but setup " \
           "'nonlinear_probe' expects 'pretrained'" in md
    assert "nonlinear_probe, fold 2: missing vox2vec_run.json" in md
    assert "| non-linear probing | mixed | unknown |" in md
    assert _read_csv(out / "dice_table.csv")["nonlinear_probe"]["trainable_parameters"] == ""


def test_clear_errors(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture) -> None:
    assert main(["-d", "42", "--setups", "scratch", "nonsense"]) == 2
    assert "unknown setup 'nonsense'; known setups: scratch, linear_probe" in capsys.readouterr().err
    assert main(["-d", "77"]) == 2
    assert "dataset '77' was not found" in capsys.readouterr().err
    assert main(["-d", "Dataset077_Nowhere"]) == 2
    assert "unknown dataset 'Dataset077_Nowhere'" in capsys.readouterr().err
    monkeypatch.delenv("nnUNet_results")
    assert main(["-d", "42"]) == 2
    assert "export nnUNet_results=" in capsys.readouterr().err


def _fake_preprocessed(pre: Path, num_cases: int) -> Path:
    """A preprocessed dataset folder the way nnU-Net lays it out (blosc2 files, plans)."""
    d = pre / DATASET
    data = d / "Vox2VecPlans_3d"
    data.mkdir(parents=True)
    (d / f"{PLANS}.json").write_text(json.dumps({"configurations": {
        CONFIG: {"data_identifier": "Vox2VecPlans_3d", "architecture": {}}}}))
    for i in range(num_cases):
        for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
            (data / f"case_{i:03d}{suffix}").write_bytes(b"")
    return d


def test_splits_k3_and_label_efficiency(env: dict[str, Path]) -> None:
    d = _fake_preprocessed(env["nnUNet_preprocessed"], 10)
    cases = [f"case_{i:03d}" for i in range(10)]
    assert training_identifiers(d, PLANS, CONFIG, None) == cases
    state = ensure_regular_splits(d, 3, lambda: training_identifiers(d, PLANS, CONFIG, None))
    on_disk = json.loads((d / SPLITS_FILE).read_text())
    assert on_disk == generate_crossval_split(cases, seed=12345, n_splits=3) == state.splits
    assert sorted(c for s in on_disk for c in s["val"]) == cases
    regular = json.loads(json.dumps(on_disk))

    state = ensure_label_efficiency_splits(d, [4, 1, 2])
    splits = json.loads((d / SPLITS_FILE).read_text())
    assert len(splits) == 3 + 3 * 3 and splits[:3] == regular
    mapping = json.loads((d / LABEL_EFFICIENCY_FILE).read_text())
    assert mapping["num_regular_folds"] == 3
    assert {(m["num_labeled"], m["fold"]) for m in mapping["splits"]} == \
        {(k, f) for k in (1, 2, 4) for f in range(3)}
    for f in range(3):
        subsets = {k: set(splits[state.fold_index(k, f)]["train"]) for k in (1, 2, 4)}
        assert [len(subsets[k]) for k in (1, 2, 4)] == [1, 2, 4]
        assert subsets[1] < subsets[2] < subsets[4] <= set(regular[f]["train"])
        for k in (1, 2, 4):
            assert splits[state.fold_index(k, f)]["val"] == regular[f]["val"]
    # a different fold draws a different case (seeded per fold), and the draw is reproducible
    assert len({frozenset(splits[state.fold_index(4, f)]["train"]) for f in range(3)}) == 3

    before = {(s.num_labeled, s.fold): s.fold_index for s in state.labeled}
    state = ensure_label_efficiency_splits(d, [2, 3])  # 2 exists, 3 is new
    splits = json.loads((d / SPLITS_FILE).read_text())
    assert splits[:3] == regular and len(splits) == 15
    assert all(state.fold_index(k, f) == i for (k, f), i in before.items())
    for f in range(3):
        three = set(splits[state.fold_index(3, f)]["train"])
        assert set(splits[state.fold_index(2, f)]["train"]) < three < \
            set(splits[state.fold_index(4, f)]["train"])

    with pytest.raises(SplitsError, match="fold 0 has 6 training cases, cannot draw 7"):
        ensure_label_efficiency_splits(d, [7])
    with pytest.raises(SplitsError, match="holds 3 regular folds, but 5 were asked for"):
        ensure_regular_splits(d, 5, lambda: cases)
    assert read_splits(d).num_regular_folds == 3  # refused: nothing changed
    state = ensure_regular_splits(d, 5, lambda: cases, overwrite=True)
    assert len(json.loads((d / SPLITS_FILE).read_text())) == 5 == state.num_regular_folds
    assert not (d / LABEL_EFFICIENCY_FILE).exists()


def test_splits_file_survives_a_write_that_fails_halfway(env: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash (disk full, kill) while the label-efficiency splits are appended leaves the old
    splits_final.json whole: nnU-Net runs reading it meanwhile see the old folds, nothing is lost."""
    d = _fake_preprocessed(env["nnUNet_preprocessed"], 9)
    ensure_regular_splits(d, 3, lambda: training_identifiers(d, PLANS, CONFIG, None))
    before = (d / SPLITS_FILE).read_text()
    write_text = Path.write_text

    def fails_halfway(path: Path, text: str, *args: object, **kwargs: object) -> int:
        write_text(path, text[:len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", fails_halfway)
    with pytest.raises(OSError, match="No space left"):
        ensure_label_efficiency_splits(d, [1])
    monkeypatch.undo()
    assert (d / SPLITS_FILE).read_text() == before
    assert sorted(p.name for p in d.iterdir() if p.is_file()) == [f"{PLANS}.json", SPLITS_FILE]
    assert read_splits(d).num_regular_folds == 3 and len(read_splits(d).splits) == 3


def test_label_efficiency_table(env: dict[str, Path], tmp_path: Path) -> None:
    d = _fake_preprocessed(env["nnUNet_preprocessed"], 9)
    ensure_regular_splits(d, 3, lambda: training_identifiers(d, PLANS, CONFIG, None))
    state = ensure_label_efficiency_splits(d, [1, 2])
    r = env["nnUNet_results"]
    # scratch, 1 labeled: per fold means (.2+.4)/2=.3, (.3+.3)/2=.3, (.5+.3)/2=.4 -> .3333 ± .057735
    #          2 labeled: folds 0, 1 only: .5, .6 -> .55 ± .0707107 (fold 2 missing)
    for f, (liver, spleen) in enumerate([(0.2, 0.4), (0.3, 0.3), (0.5, 0.3)]):
        _write_fold(r, "scratch", state.fold_index(1, f), liver, spleen, params=48_592_477)
    for f, (liver, spleen) in enumerate([(0.6, 0.4), (0.7, 0.5)]):
        _write_fold(r, "scratch", state.fold_index(2, f), liver, spleen, params=48_592_477)
    # fine-tuning, 1 labeled: per fold .4 .5 .4, paired with scratch's .3 .3 .4: +.1 +.2 0 -> +.1 ± .1
    for f, (liver, spleen) in enumerate([(0.4, 0.4), (0.5, 0.5), (0.5, 0.3)]):
        _write_fold(r, "finetune", state.fold_index(1, f), liver, spleen, params=48_592_477)
    out = tmp_path / "out"
    code = main(["-d", DATASET, "--setups", "scratch", "finetune", "--folds", "3", "--labeled", "1", "2",
                 "-o", str(out)])
    assert code == 0  # the regular folds were never trained; the label-efficiency ones were
    with (out / "label_efficiency.csv").open() as f:
        lines = {int(row["num_labeled"]): row for row in csv.DictReader(f) if row["setup"] == "scratch"}
    assert float(lines[1]["mean_dice_mean"]) == pytest.approx(1 / 3)
    assert float(lines[1]["mean_dice_std"]) == pytest.approx(0.057735, abs=1e-6)
    assert float(lines[2]["mean_dice_mean"]) == pytest.approx(0.55)
    assert float(lines[2]["mean_dice_std"]) == pytest.approx(0.0707107, abs=1e-6)
    assert lines[2]["num_folds"] == "2"
    md = (out / "label_efficiency.md").read_text()
    assert "| from scratch | random_init | 48,592,477 | 33.3 ± 5.8 (n=3) | 55.0 ± 7.1 (n=2) |" in md
    assert f"scratch, fold {state.fold_index(2, 2)}: 2 labeled, regular fold 2: fold not " \
           f"trained" in md
    i = [state.fold_index(1, f) for f in range(3)]
    # paired +.1 +.2 0: mean .1, std .1, 95% interval .1 ± t(.975, 2) .1 / sqrt(3) = .1 ± 4.30265 × .057735
    #   = [-.148414, .348414]: level
    assert f"| fine-tuning | +10.0 [-14.8, +34.8] level (f{i[0]} +10.0, f{i[1]} +20.0, f{i[2]} +0.0) | — |" in md
    assert "| from scratch | 0.0003 (budget base); 1 run(s) per fold | 0.0003 (budget base); 1 run(s) per fold |" in md
    assert "Fine-tuning's LR is its head's: its backbone stays frozen for the first third, then warms up " \
           "3e-05 -> 0.0003 whatever the head's LR" in md
    with (out / "label_efficiency.csv").open() as f:
        finetune = {int(row["num_labeled"]): row for row in csv.DictReader(f) if row["setup"] == "finetune"}
    assert float(finetune[1]["paired_diff_ci95_low"]) == pytest.approx(-0.148414, abs=1e-6)
    assert float(finetune[1]["paired_diff_ci95_high"]) == pytest.approx(0.348414, abs=1e-6)
    assert finetune[1]["paired_reading"] == "level" and finetune[1]["learning_rate_mode"] == "fixed"
    assert imread(out / "dice_vs_labeled.png").shape[0] > 100
    assert "all (" not in md  # no regular fold finished: no column for all labels

    # the regular folds (6 training cases each) end each row, paired like the others:
    # scratch .6 .6 .8 -> 66.7 ± 11.5; fine-tuning .7 .8 .8 -> 76.7 ± 5.8, paired +.1 +.2 0 -> +10.0 ± 10.0
    for f, (scratch, finetune) in enumerate([(0.6, 0.7), (0.6, 0.8), (0.8, 0.8)]):
        _write_fold(r, "scratch", f, scratch, scratch, params=48_592_477)
        _write_fold(r, "finetune", f, finetune, finetune, params=48_592_477)
    assert main(["-d", DATASET, "--setups", "scratch", "finetune", "--folds", "3", "--labeled", "1", "2",
                 "-o", str(out)]) == 0
    md = (out / "label_efficiency.md").read_text()
    assert "| Setup | Backbone | Trainable params | 1 labeled | 2 labeled | all (6) |" in md
    assert "| from scratch | random_init | 48,592,477 | 33.3 ± 5.8 (n=3) | 55.0 ± 7.1 (n=2) | 66.7 ± 11.5 (n=3) |" in md
    assert (f"| fine-tuning | +10.0 [-14.8, +34.8] level (f{i[0]} +10.0, f{i[1]} +20.0, f{i[2]} +0.0) | — | "
            f"+10.0 [-14.8, +34.8] level (f0 +10.0, f1 +20.0, f2 +0.0) |") in md


def test_repeated_runs_count_as_the_mean_of_each_fold_with_their_spread(env: dict[str, Path], tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    r = env["nnUNet_results"]
    run2 = r / DATASET / "vox2vec_repeats" / "run2"
    # scratch, run 1: per fold means .3 .6 .8; run 2 (folds 0, 1): .5 .5
    #   liver per fold (.2+.4)/2=.3, (.6+.5)/2=.55, .8; mean over labels per fold .4 .55 .8 -> 58.3 ± 20.2
    #   run-to-run: var(.3, .5)=.02, var(.6, .5)=.005 -> sqrt(.0125) = .1118034
    for f, (liver, spleen) in enumerate([(0.2, 0.4), (0.6, 0.6), (0.8, 0.8)]):
        _write_fold(r, "scratch", f, liver, spleen, params=48_592_477)
    for f, (liver, spleen) in enumerate([(0.4, 0.6), (0.5, 0.5)]):
        _write_fold(run2, "scratch", f, liver, spleen, params=48_592_477)
    # fine-tuning, run 1 only: .5 .6 .9 -> paired with .4 .55 .8: +.1 +.05 +.1 -> +8.3 ± 2.9
    for f, d in enumerate([0.5, 0.6, 0.9]):
        _write_fold(r, "finetune", f, d, d, params=48_592_477)
    out = tmp_path / "out"
    assert main(["-d", DATASET, "--setups", "scratch", "finetune", "--folds", "3", "--repeats", "2",
                 "-o", str(out)]) == 0
    rows = _read_csv(out / "dice_table.csv")
    assert float(rows["scratch"]["mean_dice_mean"]) == pytest.approx((0.4 + 0.55 + 0.8) / 3)
    assert float(rows["scratch"]["liver_dice_mean"]) == pytest.approx((0.3 + 0.55 + 0.8) / 3)
    assert rows["scratch"]["runs_per_fold"] == "0:2 1:2 2:1"
    assert float(rows["scratch"]["run_to_run_std"]) == pytest.approx(0.1118034, abs=1e-7)
    assert rows["finetune"]["runs_per_fold"] == "0:1 1:1 2:1" and rows["finetune"]["run_to_run_std"] == ""
    assert float(rows["finetune"]["paired_diff_mean"]) == pytest.approx(0.25 / 3)
    md = (out / "dice_table.md").read_text()
    assert "| Folds | Runs per fold | liver | spleen | Mean | Run-to-run std | Δ Mean vs from scratch, per fold |" in md
    # scratch's liver per fold .3 .55 .8 -> 55.0 ± 25.0; one fold of three ran once
    assert "| from scratch | random_init | 48,592,477 | 45,000 × 7 | 0.0003 (budget base) | 3 | 1-2 | 55.0 ± 25.0 |" in md
    # fine-tuning's paired +.1 +.05 +.1: mean .083333, std .028868, 95% interval
    #   .083333 ± t(.975, 2) .028868 / sqrt(3) = .083333 ± .071711 = [.011622, .155044]: ahead
    assert "| 58.3 ± 20.2 | 11.2 | — | — | — | — |" in md
    assert "| 66.7 ± 20.8 | n/a | f0 +10.0, f1 +5.0, f2 +10.0 | +8.3 ± 2.9 | [+1.2, +15.5] | ahead |" in md
    assert "scratch, fold 2: run 2: fold not trained (folder missing)" in md
    assert "finetune: run 2: never trained (no results folder)" in md

    # one run (the default) reads the regular folder only, and shows no run columns
    assert main(["-d", DATASET, "--setups", "scratch", "--folds", "3", "-o", str(out)]) == 0
    assert float(_read_csv(out / "dice_table.csv")["scratch"]["mean_dice_mean"]) == pytest.approx(
        (0.3 + 0.6 + 0.8) / 3)
    assert "Run-to-run std" not in (out / "dice_table.md").read_text()
    assert "| 0.0003 (budget base) | 3 | 1 |" in (out / "dice_table.md").read_text()
    assert main(["-d", DATASET, "--setups", "scratch", "--folds", "3", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err


def test_resume_decision(tmp_path: Path) -> None:
    fold = tmp_path / "fold_0"
    assert decide_action(fold) is Action.TRAIN  # nothing there yet
    fold.mkdir()
    (fold / "checkpoint_latest.pth").write_bytes(b"")
    assert decide_action(fold) is Action.CONTINUE
    (fold / "checkpoint_final.pth").write_bytes(b"")
    assert decide_action(fold) is Action.VALIDATE
    (fold / "validation").mkdir()
    (fold / "validation" / "summary.json").write_text("{}")
    assert decide_action(fold) is Action.SKIP


def test_train_command_and_weights(tmp_path: Path) -> None:
    layout = ResultsLayout(tmp_path / DATASET, PLANS, CONFIG)
    weights = tmp_path / "fpn.pth"
    probe = Job(SETUPS["linear_probe"], 1, "fold 1")
    base = ["nnUNetv2_train", DATASET, CONFIG, "1", "-tr", "Vox2VecTrainer_LinearProbe", "-p", PLANS]
    assert train_command("nnUNetv2_train", DATASET, layout, probe, Action.TRAIN, weights, "cpu") == \
        base + ["-pretrained_weights", str(weights.resolve()), "-device", "cpu"]
    # nnU-Net refuses -pretrained_weights together with --c; --val does not train
    assert train_command("nnUNetv2_train", DATASET, layout, probe, Action.CONTINUE, weights,
                         "cpu") == base + ["-device", "cpu", "--c"]
    assert train_command("nnUNetv2_train", DATASET, layout, probe, Action.VALIDATE, weights,
                         None) == base + ["--val"]
    random_probe = Job(SETUPS["linear_probe_random"], 0, "fold 0")
    assert "-pretrained_weights" not in train_command(
        "nnUNetv2_train", DATASET, layout, random_probe, Action.TRAIN, weights, None)

    with pytest.raises(ValueError, match="start from the pre-trained FPN: linear_probe;"):
        check_weights([SETUPS["scratch"], SETUPS["linear_probe"]], None)
    with pytest.raises(ValueError, match="unet_finetune; pass --unet_pretrained_weights FILE"):
        check_weights([SETUPS["unet_finetune"]], None, "--unet_pretrained_weights")
    with pytest.raises(ValueError, match="no such file"):
        check_weights([SETUPS["finetune"]], weights)
    check_weights([SETUPS["scratch"], SETUPS["linear_probe_random"]], None)  # no weights needed


def test_run_jobs_streams_resumes_and_continues_after_failure(tmp_path: Path) -> None:
    """A stand-in for nnUNetv2_train (no training): it echoes its arguments, writes the files a
    finished fold has, and fails for fold 1."""
    fake = tmp_path / "fake_train.py"
    fake.write_text(
        "import os, sys, pathlib\n"
        "fold = sys.argv[3]\n"
        "print('results', os.environ['nnUNet_results'])\n"
        f"d = pathlib.Path({str(tmp_path / DATASET)!r}) / (sys.argv[5] + '__' + sys.argv[7] + "
        "'__' + sys.argv[2]) / ('fold_' + fold)\n"
        "print('args', ' '.join(sys.argv[1:]))\n"
        "if fold == '1':\n"
        "    sys.exit(3)\n"
        "(d / 'validation').mkdir(parents=True, exist_ok=True)\n"
        "(d / 'checkpoint_final.pth').write_bytes(b'')\n"
        "(d / 'validation' / 'summary.json').write_text('{}')\n")
    executable = tmp_path / "nnUNetv2_train"
    executable.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    executable.chmod(0o755)
    layout = ResultsLayout(tmp_path / DATASET, PLANS, CONFIG)
    setup = SETUPS["scratch"]
    interrupted = layout.fold_dir(setup.trainer, 2)
    interrupted.mkdir(parents=True)
    (interrupted / "checkpoint_latest.pth").write_bytes(b"")
    done = layout.fold_dir(setup.trainer, 3)
    (done / "validation").mkdir(parents=True)
    (done / "checkpoint_final.pth").write_bytes(b"")
    (done / "validation" / "summary.json").write_text("{}")

    class Capture:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    out = Capture()
    jobs = [Job(setup, f, f"fold {f}") for f in range(4)]
    outcomes = run_jobs(jobs, DATASET, layout, None, "cpu", str(executable), out,  # type: ignore[arg-type]
                        env={"nnUNet_results": str(tmp_path)})
    assert f"[scratch fold 0] results {tmp_path}\n" in out.text  # the checkpoint's own results root
    assert [o.action for o in outcomes] == [Action.TRAIN, Action.TRAIN, Action.CONTINUE, Action.SKIP]
    assert [o.error is None for o in outcomes] == [True, False, True, True]
    assert "exited with code 3" in outcomes[1].error
    assert f"[scratch fold 0] args {DATASET} {CONFIG} 0 -tr Vox2VecTrainer -p {PLANS} -device cpu" \
        in out.text
    assert f"[scratch fold 2] args {DATASET} {CONFIG} 2 -tr Vox2VecTrainer -p {PLANS} -device cpu --c" \
        in out.text
    assert "[scratch fold 3] skip" in out.text and "fold 3] args" not in out.text
    assert decide_action(layout.fold_dir(setup.trainer, 0)) is Action.SKIP


def test_mean_std_is_sample_std() -> None:
    from vox2vec_nnunet.benchmark.table import mean_std
    stats = mean_std([0.5, 0.7, math.nan])  # NaN left out: mean .6, std sqrt(2 * .1² / 1)
    assert (stats.mean, stats.n) == (pytest.approx(0.6), 2)
    assert stats.std == pytest.approx(0.1 * np.sqrt(2))
    assert mean_std([0.5]).std is None and mean_std([0.5]).percent() == "50.0 ± n/a"


def _write_snapshot(path: Path, trainer: str, seed: int, iteration: int) -> Path:
    """A weights-only snapshot as Vox2VecPretrainTrainer.save_snapshot writes it."""
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {"w": torch.zeros(1)}, "trainer_name": trainer,
                "vox2vec": {"seed": seed, "iteration": iteration, "epoch": iteration // 50}}, path)
    return path


def test_pretraining_curve_table_seed_spread_and_figure(env: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Linear-probe folds trained from three snapshots of seed 0 and the final checkpoint of
    seed 1, each in the results root of its checkpoint; the random-FPN probe in the regular
    folder is the 0-iteration point."""
    from vox2vec_nnunet.benchmark.pretraining_curve import PretrainingCheckpoint, checkpoint_results_root
    r = env["nnUNet_results"]
    run0 = tmp_path / "pre" / "Vox2VecPretrainTrainer_Demo_Seed0__Vox2VecPlans__3d_vox2vec_pretrain" / "fold_all"
    for iteration in (100, 300, 500):  # written out of order; the file name is not what counts
        _write_snapshot(run0 / "snapshots" / f"checkpoint_iter_{iteration:07d}.pth",
                        "Vox2VecPretrainTrainer_Demo_Seed0", 0, iteration)
    final1 = _write_snapshot(tmp_path / "pre1" / "checkpoint_final.pth", "Vox2VecPretrainTrainer_Demo_Seed1", 1, 500)
    duplicate = _write_snapshot(tmp_path / "copy.pth", "Vox2VecPretrainTrainer_Demo_Seed0", 0, 500)

    def root(trainer: str, seed: int, iteration: int) -> Path:
        return checkpoint_results_root(r / DATASET, PretrainingCheckpoint(trainer, seed, iteration, Path("x")))

    # per fold mean over labels: seed 0 at 100: .2 .3 .4 -> .3 ± .1; at 300: .5 .5 .5 -> .5 ± 0;
    # at 500: .6 .7 -> .65 (fold 2 missing); seed 1 at 500: .45 .45 .45 -> .45
    # spread at 500 over seeds: .65, .45 -> .55 ± sqrt(2 * .1² / 1) = .1414214
    folds = {("Vox2VecPretrainTrainer_Demo_Seed0", 0, 100): [(0.1, 0.3), (0.3, 0.3), (0.4, 0.4)],
             ("Vox2VecPretrainTrainer_Demo_Seed0", 0, 300): [(0.5, 0.5)] * 3,
             ("Vox2VecPretrainTrainer_Demo_Seed0", 0, 500): [(0.6, 0.6), (0.7, 0.7)],
             ("Vox2VecPretrainTrainer_Demo_Seed1", 1, 500): [(0.4, 0.5)] * 3}
    for key, dice in folds.items():
        for fold, (liver, spleen) in enumerate(dice):
            _write_fold(root(*key), "linear_probe", fold, liver, spleen, params=1_494)
    for fold in range(3):  # random FPN, BN re-estimated: .1 .1 .1
        _write_fold(r, "linear_probe_random_bn", fold, 0.1, 0.1, params=1_494)
    out = tmp_path / "out"
    code = main(["-d", DATASET, "--setups", "linear_probe", "linear_probe_random_bn", "--folds", "3", "-o", str(out),
                 "--pretraining_curve", str(run0), str(final1), str(duplicate)])
    assert code == 0
    with (out / "pretraining_curve.csv").open() as f:
        lines = [(row["setup"], row["pretraining_seed"], int(row["pretraining_iterations"]), row["num_folds"],
                  round(float(row["mean_dice_mean"]), 6), round(float(row["mean_dice_std"]), 6))
                 for row in csv.DictReader(f)]
    assert lines == [("linear_probe_random_bn", "", 0, "3", 0.1, 0.0), ("linear_probe", "0", 100, "3", 0.3, 0.1),
                     ("linear_probe", "0", 300, "3", 0.5, 0.0), ("linear_probe", "0", 500, "2", 0.65, 0.070711),
                     ("linear_probe", "1", 500, "3", 0.45, 0.0)]
    md = (out / "pretraining_curve.md").read_text()
    assert "| linear probing | Vox2VecPretrainTrainer_Demo | 0 | 100 | 0.0003 (budget base) | 3 | 26.7 ± 15.3 | 33.3 ± 5.8 | " \
           "30.0 ± 10.0 |" in md
    assert "| linear probing, random FPN, BN re-estimated | none (random FPN) | — | 0 | 0.0003 (budget base) | 3 |" in md
    assert "| linear probing | Vox2VecPretrainTrainer_Demo | 500 | seed 0: 65.0, seed 1: 45.0 | 55.0 ± 14.1 " \
           "(n=2 seeds) |" in md
    assert "linear_probe, fold 2: seed 0, 500 pre-training iterations: fold not trained (folder missing) (" \
        f"{root('Vox2VecPretrainTrainer_Demo_Seed0', 0, 500) / DATASET}" in md
    printed = capsys.readouterr().out
    assert f"{duplicate} is Vox2VecPretrainTrainer_Demo_Seed0, seed 0, 500 pre-training iterations again" in printed
    image = imread(out / "dice_vs_pretraining.png")
    assert image.shape[0] > 100 and image.std() > 0
    # the table of the setups without weights is written as before
    assert list(_read_csv(out / "dice_table.csv")) == ["linear_probe_random_bn"]


def test_pretraining_curve_refuses_checkpoints_without_a_record(env: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    import torch
    imported = tmp_path / "imported.pth"
    torch.save({"network_weights": {}}, imported)  # e.g. vox2vec_nnunet_import_weights output
    (tmp_path / "empty").mkdir()
    for paths, message in (([imported], f"{imported}: no 'vox2vec' record with seed and iteration"),
                           ([tmp_path / "empty"], "no snapshots (checkpoint_iter_*.pth)"),
                           ([tmp_path / "nowhere"], "no such file or folder")):
        assert main(["-d", DATASET, "--setups", "linear_probe", "--pretraining_curve", *map(str, paths)]) == 2
        assert message in capsys.readouterr().err
    assert main(["-d", DATASET, "--setups", "scratch", "--pretraining_curve", str(imported)]) == 2
    assert "none of the setups scratch starts from pre-trained FPN weights" in capsys.readouterr().err
    assert main(["-d", DATASET, "--setups", "linear_probe", "unet_finetune", "--pretraining_curve",
                 str(imported)]) == 2
    assert "run unet_finetune in a benchmark of its own" in capsys.readouterr().err


def test_label_efficiency_figure_ends_with_all_labels_and_keeps_its_title_inside(tmp_path: Path) -> None:
    """One --labeled value and the regular folds: two points per setup, the last one at the
    regular folds' training cases and marked "all"; the long subtitle is wrapped, not cut."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from vox2vec_nnunet.benchmark.collect import FoldResult
    from vox2vec_nnunet.benchmark.figures import plot_dice_vs_labeled
    from vox2vec_nnunet.benchmark.table import summarise

    def row(setup: str, dice: list[float]):
        return summarise(SETUPS[setup], [FoldResult(f, {"liver": d, "spleen": d}, None) for f, d in enumerate(dice)])[0]

    labeled = [(2, row("scratch", [0.2, 0.3, 0.4])), (2, row("linear_probe", [0.3, 0.3, 0.3]))]
    everything = [row("scratch", [0.7, 0.8, 0.9]), row("linear_probe", [0.5, 0.5, 0.5])]
    subtitle = ("Dataset601_DemoPhantoms, Vox2VecPlans/3d_vox2vec, budget 500 × 2 (iterations × batch), "
                "a long line\nhollow markers: backbone not pre-trained (from scratch, random FPN); error bars: "
                "sample std over folds")
    fig = plot_dice_vs_labeled(labeled, tmp_path / "f.png", subtitle, all_labeled=everything, all_cases=[6, 6, 5])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "all (5-6)"]
    curves = [container.lines[0] for container in ax.containers]  # each errorbar's data line
    assert [list(c.get_xdata()) for c in curves] == [[2, 6], [2, 6]]
    assert [list(c.get_ydata()) for c in curves] == [pytest.approx([30.0, 80.0]), pytest.approx([30.0, 50.0])]
    # error bars: 95% intervals; scratch at 2 labeled .2 .3 .4 -> 30 ± t(.975, 2) 10 / sqrt(3) = 30 ± 24.84138
    (low, high) = ax.containers[0].lines[2][0].get_segments()[0]
    assert (low[1], high[1]) == (pytest.approx(30 - 24.84138, abs=1e-4), pytest.approx(30 + 24.84138, abs=1e-4))
    renderer = FigureCanvasAgg(fig).get_renderer()
    title = ax.title.get_window_extent(renderer)
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    assert ax.get_title().split() == ["Label", "efficiency", *subtitle.split()]  # nothing dropped


def test_parameters_figure_legend_stands_beside_the_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight setups: the legend lies right of the axes (covering no marker) and inside the figure,
    and so does the long subtitle above the narrowed axes, wrapped, not cut."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from vox2vec_nnunet.benchmark import figures
    from vox2vec_nnunet.benchmark.collect import FoldResult, RunRecord
    from vox2vec_nnunet.benchmark.table import summarise

    drawn = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (drawn.append(fig), save(fig, path)))
    rows = []
    for i, (name, setup) in enumerate((n, s) for n, s in SETUPS.items() if not s.own_unet):
        record = RunRecord(setup.trainer, setup.expected_backbone_source, None, 1000 * (i + 1), 10**6, 500, 2)
        rows.append(summarise(setup, [FoldResult(f, {"liver": 0.1 * i, "spleen": 0.5}, record) for f in range(3)])[0])
    assert len(rows) == 8
    subtitle = ("Dataset602_ClinicalPhantoms, Vox2VecPlans/3d_vox2vec, budget 500 × 2 (iterations × batch), "
                "learning rates selected per fold\nhollow markers: backbone not pre-trained (from scratch, random "
                "FPN); " + figures.ERROR_BARS)
    assert figures.plot_dice_vs_parameters(rows, tmp_path / "f.png", subtitle) == []
    (fig,) = drawn
    renderer = FigureCanvasAgg(fig).get_renderer()
    axes, legend = fig.axes[0].get_window_extent(renderer), fig.axes[0].get_legend().get_window_extent(renderer)
    assert legend.x0 >= axes.x1 and legend.x1 <= fig.bbox.x1 and legend.y1 <= fig.bbox.y1
    assert len(fig.axes[0].get_legend().get_texts()) == 8
    (title,) = [t for t in (fig.axes[0].title, fig.axes[0]._left_title, fig.axes[0]._right_title) if t.get_text()]
    assert title.get_text().split() == ["Dice", "vs.", "trainable", "parameters", *subtitle.split()]  # nothing dropped
    extent = title.get_window_extent(renderer)
    assert extent.x0 >= 0 and extent.x1 <= fig.bbox.x1 and extent.y1 <= fig.bbox.y1


# --- learning-rate selection ------------------------------------------------------------------

def test_inner_splits_come_from_each_scored_folds_training_cases_only(env: dict[str, Path]) -> None:
    from vox2vec_nnunet.benchmark.splits import SELECTION_SPLITS_FILE, ensure_inner_splits, inner_split
    d = _fake_preprocessed(env["nnUNet_preprocessed"], 10)
    ensure_regular_splits(d, 3, lambda: training_identifiers(d, PLANS, CONFIG, None))
    state = ensure_label_efficiency_splits(d, [1, 2, 4])
    before = json.loads((d / SPLITS_FILE).read_text())
    scored = [(f, k) for k in (None, 2, 4) for f in range(3)]
    state = ensure_inner_splits(d, scored)
    splits = json.loads((d / SPLITS_FILE).read_text())
    assert splits[:len(before)] == before and len(splits) == len(before) + 9  # appended, nothing else touched
    assert read_splits(d).inner == state.inner
    for f, k in scored:
        trained = set(splits[f]["train"] if k is None else splits[state.fold_index(k, f)]["train"])
        inner = splits[state.inner_index(f, k)]
        assert set(inner["train"]) | set(inner["val"]) == trained  # the scored fold's training cases, all of them
        assert not set(inner["train"]) & set(inner["val"])
        assert not set(inner["train"] + inner["val"]) & set(splits[f]["val"])  # never a scored validation case
        assert len(inner["val"]) == max(1, (len(trained) + 1) // 3) and inner["train"]
        assert inner == inner_split(sorted(trained, reverse=True), f, k, 12345)  # deterministic, order-free
    # 6 or 7 training cases per regular fold: 2 validate; 4 labeled: 1; 2 labeled: 1
    assert [len(splits[state.inner_index(f, None)]["val"]) for f in range(3)] == [
        max(1, (len(splits[f]["train"]) + 1) // 3) for f in range(3)]
    assert len({tuple(splits[state.inner_index(f, None)]["val"]) for f in range(3)}) == 3
    # seeded by the fold: the same cases split by another fold's seed come out differently somewhere
    cases = [f"case_{i:03d}" for i in range(9)]
    assert len({tuple(inner_split(cases, f, None, 12345)["val"]) for f in range(3)}) > 1

    assert ensure_inner_splits(d, scored) == state  # a rerun appends nothing
    assert json.loads((d / SPLITS_FILE).read_text()) == splits
    with pytest.raises(SplitsError, match="the 1 labeled cases of fold 0 has 1 training case"):
        ensure_inner_splits(d, [(0, 1)])
    edited = json.loads(json.dumps(splits))
    edited[state.inner_index(0, None)]["val"].reverse()
    edited[state.inner_index(0, None)]["val"][0] = splits[0]["val"][0]
    (d / SPLITS_FILE).write_text(json.dumps(edited))
    with pytest.raises(SplitsError, match="is not the inner split recorded in vox2vec_lr_selection.json"):
        ensure_inner_splits(d, scored)
    ensure_regular_splits(d, 3, lambda: training_identifiers(d, PLANS, CONFIG, None), overwrite=True)
    assert not (d / SELECTION_SPLITS_FILE).exists() and read_splits(d).inner == []


def test_choice_rule_best_inner_dice_ties_to_the_smaller_rate() -> None:
    from vox2vec_nnunet.benchmark.lr_selection import choose
    assert choose({1e-4: 0.5, 1e-3: 0.7, 3e-3: 0.6}) == 1e-3
    assert choose({1e-4: 0.5, 1e-3: 0.7, 3e-3: 0.7}) == 1e-3  # equal Dice: the smaller value
    assert choose({3e-3: 0.7, 1e-3: 0.7}) == 1e-3  # whatever the order
    assert choose({1e-4: math.nan, 1e-3: 0.1}) == 1e-3  # NaN is the worst
    assert choose({1e-4: 0.9, 1e-3: None}) is None  # a missing run: no choice
    assert choose({}) is None


def _selection_tree(env: dict[str, Path]) -> tuple[Path, object]:
    """9 cases in 3 folds with their inner splits and the 1-labeled splits; inner runs of scratch
    and linear_probe at 1e-4 and 1e-3 (foreground Dice below), and the final runs at the chosen rates."""
    from vox2vec_nnunet.benchmark.splits import ensure_inner_splits
    d = _fake_preprocessed(env["nnUNet_preprocessed"], 9)
    ensure_regular_splits(d, 3, lambda: training_identifiers(d, PLANS, CONFIG, None))
    ensure_label_efficiency_splits(d, [1])
    state = ensure_inner_splits(d, [(f, None) for f in range(3)])
    r = env["nnUNet_results"]
    selection = r / DATASET / "vox2vec_selection"
    # inner foreground Dice per fold at (1e-4, 1e-3): scratch (.6, .5) (.4, .7) (.5, .5) -> 1e-4, 1e-3, 1e-4 (tie);
    # linear probe (.2, .6) (.3, .5) (NaN, .2) -> 1e-3, 1e-3, 1e-3
    inner = {"scratch": [(0.6, 0.5), (0.4, 0.7), (0.5, 0.5)],
             "linear_probe": [(0.2, 0.6), (0.3, 0.5), (math.nan, 0.2)]}
    for setup, per_fold in inner.items():
        for f, dice in enumerate(per_fold):
            for lr, value in zip((1e-4, 1e-3), dice):
                _write_fold(selection / f"lr{lr:g}", setup, state.inner_index(f, None), value, value, params=1_000,
                            lr=lr, lr_source="VOX2VEC_LEARNING_RATE")
    chosen = {"scratch": [1e-4, 1e-3, 1e-4], "linear_probe": [1e-3, 1e-3, 1e-3]}
    final = {"scratch": [0.8, 0.7, 0.9], "linear_probe": [0.6, 0.5, 0.7]}
    for setup in final:
        for f in range(3):
            for index in (f, state.fold_index(1, f)):
                _write_fold(selection / "selected", setup, index, final[setup][f], final[setup][f], params=1_000,
                            lr=chosen[setup][f], lr_source="VOX2VEC_LEARNING_RATE")
    return selection, state


def test_selection_never_reads_the_scored_folds_results(env: dict[str, Path], tmp_path: Path) -> None:
    """The choice comes from the inner runs alone: changing the scored folds' validation results
    (in the final runs' root and in the regular folder) changes the table, not the choice."""
    from vox2vec_nnunet.benchmark.lr_selection import ScoredFold, select
    selection, state = _selection_tree(env)
    layout = ResultsLayout(env["nnUNet_results"] / DATASET, PLANS, CONFIG)
    scored = [ScoredFold(f, f) for f in range(3)] + [ScoredFold(state.fold_index(1, f), f, 1) for f in range(3)]
    out = tmp_path / "out"
    args = ["-d", DATASET, "--setups", "scratch", "linear_probe", "--folds", "3", "--select_lr",
            "--lr_grid", "1e-3", "1e-4", "--labeled", "1", "-o", str(out)]
    assert main(args) == 0

    def choices() -> list[tuple]:
        with (out / "lr_selection.csv").open() as f:
            return [(row["setup"], row["scored_fold_index"], row["chosen_lr"]) for row in csv.DictReader(f)]

    first = choices()
    assert [c for c in first if c[1] in "012"] == [
        ("scratch", "0", "0.0001"), ("scratch", "1", "0.001"), ("scratch", "2", "0.0001"),
        ("linear_probe", "0", "0.001"), ("linear_probe", "1", "0.001"), ("linear_probe", "2", "0.001")]
    selections = select(layout, SETUPS["scratch"], scored, state, (1e-4, 1e-3))[0]
    rows = _read_csv(out / "dice_table.csv")
    assert float(rows["scratch"]["mean_dice_mean"]) == pytest.approx(0.8)
    assert rows["scratch"]["learning_rate"] == "selected: f0 0.0001, f1 0.001, f2 0.0001"
    assert rows["scratch"]["learning_rate_mode"] == "selected"
    md = (out / "dice_table.md").read_text()
    assert "| selected: f0 0.001, f1 0.001, f2 0.001 | 3 | 1 |" in md
    labeled = (out / "label_efficiency.md").read_text()
    i = [state.fold_index(1, f) for f in range(3)]
    assert (f"selected (1 labeled case: the regular fold's choice): f{i[0]} 0.0001, f{i[1]} 0.001, f{i[2]} 0.0001; "
            f"1 run(s) per fold") in labeled
    text = (out / "lr_selection.md").read_text()
    inner = [state.inner_index(f, None) for f in range(3)]
    assert f"| from scratch | fold 2 | split {inner[2]}: 4 train / 2 val | 0.0001: 50.0, 0.001: 50.0 | 0.0001 |" in text
    assert f"| linear probing | 1 labeled, fold 0 (split {i[0]}) | fold 0's (1 labeled case: the regular fold's " \
           f"choice) | 0.0001: 20.0, 0.001: 60.0 | 0.001 |" in text
    assert f"| linear probing | fold 2 | split {inner[2]}: 4 train / 2 val | 0.0001: nan, 0.001: 20.0 | 0.001 |" in text

    # the scored folds' validation results change (and their labels with them): the choice does not
    for root in (selection / "selected", env["nnUNet_results"]):
        for setup in ("scratch", "linear_probe"):
            for f in range(3):
                fold_dir = _trainer_dir(root, SETUPS[setup].trainer) / f"fold_{f}"
                if fold_dir.exists():
                    import shutil
                    shutil.rmtree(fold_dir)
                _write_fold(root, setup, f, 0.1 * (f + 1), 0.05, params=1_000,
                            lr=None if root == env["nnUNet_results"] else [1e-4, 1e-3, 1e-4][f]
                            if setup == "scratch" else 1e-3, lr_source="VOX2VEC_LEARNING_RATE")
    assert main(args) == 0
    assert choices() == first
    assert select(layout, SETUPS["scratch"], scored, state, (1e-4, 1e-3))[0] == selections
    assert float(_read_csv(out / "dice_table.csv")["scratch"]["mean_dice_mean"]) == pytest.approx(
        (0.075 + 0.125 + 0.175) / 3)  # the table did read the new results


def test_selection_reports_missing_inner_runs_and_folds_at_another_rate(env: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    import shutil
    selection, state = _selection_tree(env)
    shutil.rmtree(_trainer_dir(selection / "lr0.001", "Vox2VecTrainer") / f"fold_{state.inner_index(1, None)}")
    record = _trainer_dir(selection / "lr0.0001", "Vox2VecTrainer_LinearProbe") / \
        f"fold_{state.inner_index(0, None)}" / "vox2vec_run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "initial_lr": 3e-4}))
    out = tmp_path / "out"
    assert main(["-d", DATASET, "--setups", "scratch", "linear_probe", "--folds", "3", "--select_lr",
                 "--lr_grid", "1e-4", "1e-3", "-o", str(out)]) == 0
    text = (out / "lr_selection.md").read_text()
    inner = [state.inner_index(f, None) for f in range(3)]
    assert f"| from scratch | fold 1 | split {inner[1]}: 4 train / 2 val | 0.0001: 40.0, 0.001: missing | none |" in text
    assert f"scratch: fold 1, inner split {inner[1]}: inner run at lr 0.001 not finished" in text
    assert f"linear_probe: fold 0, inner split {inner[0]}: the inner run records learning rate 0.0003, not 0.0001" in text
    md = (out / "dice_table.md").read_text()
    # fold 1 of scratch was trained at 1e-3 before; no choice now: reported
    assert "scratch, fold 1: trained at 0.001 but no learning rate is chosen for it now" in md
    assert "linear_probe, fold 0: trained at 0.001 but no learning rate is chosen for it now" in md
    printed = capsys.readouterr().out
    assert "final runs at the selected learning rates (Vox2VecPlans/3d_vox2vec): " \
           f"{selection / 'selected' / DATASET}" in printed
    assert f"nnUNet_results={selection / 'selected'} nnUNetv2_predict -d {DATASET} -c {CONFIG} -p {PLANS} " \
           "-tr Vox2VecTrainer -f 0 1 2 -i INPUT -o OUTPUT" in printed

    assert main(["-d", DATASET, "--setups", "scratch", "--folds", "3", "--lr_grid", "1e-3"]) == 2
    assert "--lr_grid and --unet_lr_grid go with --select_lr" in capsys.readouterr().err
    assert main(["-d", DATASET, "--setups", "scratch", "--folds", "3", "--select_lr", "--lr_grid", "0", "1e-3"]) == 2
    assert "--lr_grid: learning rates must be positive numbers" in capsys.readouterr().err
    assert main(["-d", DATASET, "--setups", "linear_probe", "--select_lr", "--pretraining_curve", "x.pth"]) == 2
    assert "does not go with --labeled, --repeats or --select_lr" in capsys.readouterr().err


def test_paired_interval_and_reading_by_hand() -> None:
    from vox2vec_nnunet.benchmark.statistics import mean_std, reading
    t2, t1 = 4.302652729911275, 12.706204736174705  # Student t, 97.5% quantile, 2 and 1 degrees of freedom
    # differences .1 .2 0: mean .1, std .1, half width t2 × .1 / sqrt(3) = .2484138
    low, high = mean_std([0.1, 0.2, 0.0]).interval()
    assert (low, high) == (pytest.approx(0.1 - 0.2484138, abs=1e-7), pytest.approx(0.1 + 0.2484138, abs=1e-7))
    assert reading((low, high)) == "level"
    # .3 .4 .5: mean .4, std .1 -> [.1515862, .6484138], ahead; negated: behind
    assert mean_std([0.3, 0.4, 0.5]).interval() == pytest.approx((0.4 - t2 * 0.1 / 3 ** 0.5, 0.4 + t2 * 0.1 / 3 ** 0.5))
    assert reading(mean_std([0.3, 0.4, 0.5]).interval()) == "ahead"
    assert reading(mean_std([-0.3, -0.4, -0.5]).interval()) == "behind"
    # two folds, .05 and .15: mean .1, std .0707107, half width t1 × .05 = .6353102
    assert mean_std([0.05, 0.15]).interval() == pytest.approx((0.1 - t1 * 0.05, 0.1 + t1 * 0.05))
    assert reading((0.0, 0.2)) == reading((-0.2, 0.0)) == "level"  # an end at 0 holds 0
    assert reading(mean_std([0.1, 0.1]).interval()) == "ahead"  # no spread: the interval is the point
    assert mean_std([0.1]).interval() is None and reading(None) == "n/a"
    assert mean_std([0.1, 0.2, 0.0]).half_width() == pytest.approx(0.2484138, abs=1e-7)


def test_run_jobs_sets_the_learning_rate_and_refuses_a_fold_started_at_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for nnUNetv2_train prints VOX2VEC_LEARNING_RATE: set from the job, removed for a
    job at its budget's rate even when the shell sets it; a kept fold at another rate is not run."""
    fake = tmp_path / "fake_train.py"
    fake.write_text("import os\nprint('lr', os.environ.get('VOX2VEC_LEARNING_RATE'))\n")
    executable = tmp_path / "nnUNetv2_train"
    executable.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    executable.chmod(0o755)
    layout = ResultsLayout(tmp_path / DATASET, PLANS, CONFIG)
    setup = SETUPS["scratch"]
    started = layout.fold_dir(setup.trainer, 2)
    started.mkdir(parents=True)
    (started / "checkpoint_latest.pth").write_bytes(b"")
    (started / "vox2vec_run.json").write_text(json.dumps({
        "trainer": setup.trainer, "backbone_source": "random_init", "pretrained_weights": None,
        "trainable_parameters": 1, "total_parameters": 1, "num_iterations": 1, "batch_size": 1,
        "initial_lr": 1e-3, "learning_rate_source": "VOX2VEC_LEARNING_RATE"}))
    monkeypatch.setenv("VOX2VEC_LEARNING_RATE", "0.5")

    class Capture:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    out = Capture()
    jobs = [Job(setup, 0, "fold 0", 3e-4), Job(setup, 1, "fold 1"), Job(setup, 2, "fold 2", 3e-3),
            Job(setup, 3, "fold 3")]
    outcomes = run_jobs(jobs, DATASET, layout, None, "cpu", str(executable), out)  # type: ignore[arg-type]
    assert "[scratch fold 0, lr 0.0003] lr 0.0003\n" in out.text
    assert "[scratch fold 1] lr None\n" in out.text  # the shell's 0.5 does not reach a budget run
    assert "0.5" not in out.text
    assert "was trained at learning rate 0.001, not 0.003; delete it to train it at 0.003" in outcomes[2].error
    assert "[scratch fold 2, lr 0.003] lr" not in out.text  # not started


def test_logged_training_seconds(tmp_path: Path) -> None:
    from vox2vec_nnunet.benchmark.layout import logged_training_seconds
    assert logged_training_seconds(tmp_path) is None
    (tmp_path / "training_log_2026_1_1_00_00_00.txt").write_text(
        "2026-01-01 00:00:01: Epoch time: 12.5 s\nEpoch 1\n2026-01-01 00:00:14: Epoch time: 10.0 s\n")
    (tmp_path / "training_log_2026_1_1_01_00_00.txt").write_text("x: Epoch time: 2.25 s\n")  # resumed with --c
    assert logged_training_seconds(tmp_path) == pytest.approx(24.75)


def test_run_benchmark_takes_a_request_and_returns_a_report(results_tree: Path, tmp_path: Path) -> None:
    import io

    from vox2vec_nnunet.benchmark.pipeline import run_benchmark
    from vox2vec_nnunet.benchmark.request import BenchmarkRequest
    out = tmp_path / "out"
    report = run_benchmark(BenchmarkRequest(DATASET, setups=("scratch", "finetune"), folds=3, output=out),
                           out=io.StringIO())
    assert [r.setup.name for r in report.rows] == ["scratch"] and report.exit_code == 0 and not report.failures
    assert report.written == [out / "dice_table.md", out / "dice_table.csv", out / "dice_vs_parameters.png"]
    assert report.tables == [(f"{DATASET}, {PLANS}/{CONFIG}, folds [0, 1, 2] of 3", (out / "dice_table.md").read_text())]
    assert "finetune: no finished folds, left out of the table" in map(str, report.problems)
    assert report.errors() == ""
    (results_tree.parent / "nnUNet_preprocessed" / DATASET).mkdir()
    (results_tree.parent / "nnUNet_preprocessed" / DATASET / "dataset.json").write_text(json.dumps({"labels": LABELS}))
    empty = run_benchmark(BenchmarkRequest(DATASET, setups=("finetune",), folds=3, output=out), out=io.StringIO())
    assert empty.exit_code == 1 and "no finished fold of any setup was found" in empty.errors()
    with pytest.raises(Vox2VecError, match="--fold_ids \\[3\\] outside 0..2"):
        run_benchmark(BenchmarkRequest(DATASET, folds=3, fold_ids=(3,)))
