"""The demo command end to end, with the test trainers' tiny budgets (the real one takes ~20 min), and
what its Table 1 mode runs."""
from __future__ import annotations

import csv

import pytest
from PIL import Image

from nnunet_cli import TEST_TRAINERS
from vox2vec_nnunet.commands.demo import main


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("nnUNet_extTrainer", str(TEST_TRAINERS))
    monkeypatch.setenv("nnUNet_compile", "false")
    workspace = tmp_path / "demo"
    args = ["-o", str(workspace), "--labeled_phantoms", "4", "--unlabeled", "1", "--folds", "2", "--trainer_variant", "Test",
            "-np", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"== {step}" in out
    assert "random baseline" in out and "Settings:" in out
    table = workspace / "benchmark" / "dice_table.csv"
    rows = {row["setup"]: row for row in csv.DictReader(table.open())}
    assert set(rows) == {"linear_probe", "linear_probe_random_bn"}
    for row in rows.values():
        assert 0.0 <= float(row["mean_dice_mean"]) <= 1.0 and int(row["num_folds"]) == 2
    assert rows["linear_probe"]["backbone_source"] == "pretrained"
    assert rows["linear_probe_random_bn"]["backbone_source"] == "random_init"
    with Image.open(workspace / "benchmark" / "dice_vs_parameters.png") as figure:
        assert figure.size[0] > 300 and figure.size[1] > 200
    assert main(args) == 0  # a second run finds every step done
    again = capsys.readouterr().out
    assert "already there" in again and "already pre-trained" in again
    assert main(args + ["--pretrain_seeds", "0", "1"]) == 0  # seed 0's pre-training is kept, seed 1's added
    seeds = capsys.readouterr().out
    assert seeds.count("already pre-trained") == 1 and "Spread over pre-training seeds" in seeds
    curve = list(csv.DictReader((workspace / "benchmark_seeds" / "pretraining_curve.csv").open()))
    assert sorted((row["setup"], row["pretraining_seed"], row["num_folds"]) for row in curve) == [
        ("linear_probe", "0", "2"), ("linear_probe", "1", "2"), ("linear_probe_random_bn", "", "2")]


def test_table1_mode_runs_every_setup_at_the_demo_budget_then_few_labels(tmp_path, monkeypatch, capsys):
    from vox2vec_nnunet.training.setups import SETUPS
    from vox2vec_nnunet.demo import Demo, DemoSettings

    commands: list[list[str]] = []
    monkeypatch.setattr(Demo, "run", lambda self, name, args: commands.append([str(a) for a in args]))
    demo = Demo(DemoSettings(workspace=tmp_path, table1=True, labeled_cases=(1, 2), repeats=2))
    table, labeled = demo.table1(tmp_path / "fpn.pth")
    assert len(commands) == 2 and all(c[0] == "vox2vec_nnunet_benchmark" for c in commands)
    all_setups, few = commands
    assert all_setups[all_setups.index("--setups") + 1:all_setups.index("--folds")] == [
        name for name, setup in SETUPS.items() if not setup.own_unet]
    assert few[few.index("--setups") + 1:few.index("--folds")] == ["scratch", "finetune", "nonlinear_probe"]
    assert few[few.index("--labeled") + 1:] == ["1", "2"] and "--labeled" not in all_setups
    for c in commands:
        assert c[c.index("--trainer_variant") + 1] == "Demo" and c[c.index("--folds") + 1] == "3"
        assert c[c.index("--repeats") + 1] == "2"
    assert (table, labeled) == (tmp_path / "table1", tmp_path / "table1_labeled")
    settings = demo.table1_settings()
    assert "every setup 500 iterations (5 x 100)" in settings
    assert "learning rates scratch 0.0003, linear_probe 0.003, nonlinear_probe 0.003, finetune 0.003" in settings
    assert "frozen for 166 iterations, then its lr rises 3e-05 -> 0.0003 over 13" in settings
    assert "with and without BatchNorm statistics re-estimated" in settings
    assert "2 runs of each fold, a fold counts as the mean of its runs" in settings


def test_repeats_go_with_the_table1_mode(tmp_path, capsys):
    assert main(["-o", str(tmp_path / "demo"), "--repeats", "2"]) == 2
    assert "--repeats goes with --table1" in capsys.readouterr().err
    assert main(["-o", str(tmp_path / "demo"), "--table1", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # refused before anything was made


@pytest.mark.parametrize("modality, labeled, pretraining, config", [
    ("ct", ("601", "DemoPhantoms"), ("901", "Vox2VecPretraining"), "PhantomConfig"),
    ("mr", ("602", "DemoMRPhantoms"), ("902", "Vox2VecPretrainingMR"), "MRConfig")])
def test_modality_reaches_the_phantoms_and_every_command(tmp_path, monkeypatch, modality, labeled, pretraining,
                                                         config):
    import vox2vec_nnunet.commands.demo as demo_command
    import vox2vec_nnunet.demo as demo_module

    settings = []
    monkeypatch.setattr(demo_command, "run_demo", lambda s: settings.append(s) or 0)
    assert main(["-o", str(tmp_path), "--modality", modality, "-np", "1"]) == 0
    commands: list[list[str]] = []
    written = []
    monkeypatch.setattr(demo_module.Demo, "run", lambda self, name, args: commands.append([str(a) for a in args]))
    monkeypatch.setattr(demo_module, "write_nnunet_raw_dataset", lambda *args, **kwargs: written.append(args))
    demo = demo_module.Demo(settings[0])
    demo.phantoms()
    demo.plan()
    demo.probe(demo.pretrain(0))
    (raw, dataset_id, name, labeled_phantoms, unlabeled, seed, phantom_config), = written
    assert (str(dataset_id), name, labeled_phantoms, unlabeled) == (*labeled, 9, 16)
    assert type(phantom_config).__name__ == config
    if modality == "mr":
        assert phantom_config.channels == ("T2",)
    plan, prepare, train, benchmark = commands
    assert plan[:3] == ["vox2vec_nnunet_plan", "-d", labeled[0]]
    assert prepare[:7] == ["vox2vec_nnunet_prepare_pretraining", "-d", labeled[0], "-o", pretraining[0], "--name",
                           pretraining[1]]
    assert train[:2] == ["nnUNetv2_train", pretraining[0]]
    assert benchmark[:3] == ["vox2vec_nnunet_benchmark", "-d", labeled[0]]
    weights = benchmark[benchmark.index("--pretrained_weights") + 1]
    assert f"Dataset{pretraining[0]}_{pretraining[1]}" in weights
