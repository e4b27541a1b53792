"""Trainer behaviour without a training run: probing freezes, the fine-tuning schedule, weights checks."""
from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

from conftest import published_state_dict
from vox2vec_nnunet.commands.import_weights import main as import_main
from vox2vec_nnunet.network.fpn import FPN3d
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.network.segmentation import Vox2VecSegmentationNetwork
from vox2vec_nnunet.training.setups import SETUPS, resolve_setups
from vox2vec_nnunet.training import segmentation, unet_finetuning, variants
from vox2vec_nnunet.training.budgets import (DEMO, LEARNING_RATE_VARIABLE, NNUNET, PAPER, SEGMENTATION_BUDGETS,
                                             Budget)
from vox2vec_nnunet.training.segmentation import (Vox2VecTrainer, Vox2VecTrainer_FineTune,
                                                  Vox2VecTrainer_LinearProbe, Vox2VecTrainer_NonLinearProbe,
                                                  finetune_backbone_lr, finetune_schedule)
from vox2vec_nnunet.weights import (PUBLISHED_FPN_FILE, check_backbone_fits, import_fpn_state,
                                    reference_kernels_to_nnunet_layout)
from vox2vec_nnunet_plans.builder import SEGMENTATION_CONFIGURATION, build_plans, default_settings

DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
                "numTraining": 4, "file_ending": ".nii.gz"}


@pytest.fixture
def make_trainer(tmp_path, monkeypatch):
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    settings = default_settings(SEGMENTATION_CONFIGURATION).with_overrides(
        patch_size=[8, 16, 16], batch_size=2, base_channels=4, num_levels=3)

    def make(cls):
        plans = build_plans("Dataset501_X", "Vox2VecPlans", {SEGMENTATION_CONFIGURATION: settings}, "SimpleITKIO",
                            [0, 1, 2], ["CT"], [2.0, 1.0, 1.0], [20, 40, 40])
        plans["continue_training"] = False
        trainer = cls(plans, SEGMENTATION_CONFIGURATION, 0, DATASET_JSON, torch.device("cpu"))
        trainer.network = trainer.build_network_architecture(
            trainer.plans_manager, trainer.configuration_manager, 1, 3, enable_deep_supervision=False)
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        return trainer

    return make


def test_paper_budget_and_optimiser(make_trainer):
    trainer = make_trainer(Vox2VecTrainer)
    assert trainer.total_iterations == 45_000
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert trainer.optimizer.param_groups[0]["lr"] == 3e-4 and trainer.optimizer.param_groups[0]["weight_decay"] == 0
    assert not trainer.enable_deep_supervision


@pytest.mark.parametrize("cls, head_type", [(Vox2VecTrainer_LinearProbe, "FPNLinearHead"),
                                            (Vox2VecTrainer_NonLinearProbe, "FPNNonLinearHead")])
def test_probing_trains_the_head_and_only_the_head(make_trainer, cls, head_type):
    trainer = make_trainer(cls)
    network = trainer.network
    assert type(network.decoder.seg_layers).__name__ == head_type
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in network.decoder.parameters()}
    assert all(not p.requires_grad for p in network.backbone.parameters())
    before = {k: v.clone() for k, v in network.backbone.state_dict().items()}
    network.train()
    network.backbone.eval()  # what on_train_epoch_start does
    for _ in range(3):
        trainer.optimizer.zero_grad()
        network(torch.randn(2, 1, 8, 16, 16)).square().mean().backward()
        assert all(p.grad is None for p in network.backbone.parameters())
        assert all(p.grad is not None for p in network.decoder.parameters())
        trainer.optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in network.backbone.state_dict().items())  # BN stats too
    assert trainer.trainable_parameter_count() == sum(p.numel() for p in network.decoder.parameters())


def test_finetune_schedule_follows_the_paper(make_trainer):
    # paper Sect. 4.2: frozen for 15,000 of 45,000 batches, then 3e-5 -> 3e-4 exponentially over 1,200
    assert finetune_backbone_lr(0, 15_000) == 0.0
    assert finetune_backbone_lr(14_999, 15_000) == 0.0
    assert finetune_backbone_lr(15_000, 15_000) == pytest.approx(3e-5)
    assert finetune_backbone_lr(15_600, 15_000) == pytest.approx(3e-5 * math.sqrt(10))
    assert finetune_backbone_lr(15_900, 15_000) == pytest.approx(3e-5 * 10 ** 0.75)
    assert finetune_backbone_lr(16_200, 15_000) == pytest.approx(3e-4)
    assert finetune_backbone_lr(44_999, 15_000) == pytest.approx(3e-4)
    assert finetune_schedule(45_000) == (15_000, 1_200)
    trainer = make_trainer(Vox2VecTrainer_FineTune)
    assert (trainer.freeze_iterations, trainer.backbone_warmup_iterations) == (15_000, 1_200)
    assert [round(trainer.backbone_lr(i), 12) for i in (0, 15_000, 15_300, 16_200)] == \
        [0.0, 3e-5, round(3e-5 * 10 ** 0.25, 12), 3e-4]
    groups = trainer.optimizer.param_groups
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.network.backbone.parameters()}
    assert groups[0]["lr"] == 3e-4


def test_finetune_schedule_scales_with_the_budget(make_trainer):
    # the paper's proportions: a third frozen, 1,200/45,000 of the run to warm up (at least 1)
    assert finetune_schedule(500) == (166, 13) and finetune_schedule(400) == (133, 11)
    assert finetune_schedule(4_000) == (1_333, 107) and finetune_schedule(10) == (3, 1)
    trainer = make_trainer(variants.Vox2VecTrainer_FineTune_Demo)
    assert (trainer.total_iterations, trainer.freeze_iterations, trainer.backbone_warmup_iterations) == (500, 166, 13)
    lrs = [trainer.backbone_lr(i) for i in range(500)]
    # the backbone keeps the paper's range when the budget raises the head's learning rate
    assert lrs[165] == 0.0 and lrs[166] == pytest.approx(3e-5) and lrs[172] == pytest.approx(3e-5 * 10 ** (6 / 13))
    assert lrs[179] == lrs[499] == 3e-4 and trainer.optimizer.param_groups[0]["lr"] == 3e-3
    assert all(a <= b for a, b in zip(lrs, lrs[1:]))
    trainer.num_epochs, trainer.initial_lr = 20, 1e-3  # a variant set the nnU-Net way, after __init__
    assert (trainer.freeze_iterations, trainer.backbone_warmup_iterations) == (666, 53)
    assert trainer.backbone_lr(666) == pytest.approx(3e-5) and trainer.backbone_lr(719) == 3e-4


def test_every_fpn_setup_has_every_budget_with_equal_iterations_and_batch(make_trainer):
    fpn_setups = [s.name for s in SETUPS.values() if not s.own_unet]  # U-Nets: their plans, below
    for budget in (PAPER, *SEGMENTATION_BUDGETS.values()):
        setups = resolve_setups(fpn_setups, budget.name or None)
        made = [make_trainer(getattr(variants if budget.name else segmentation, s.trainer)) for s in setups]
        assert {(t.total_iterations, t.configuration_manager.batch_size, t.num_val_iterations_per_epoch)
                for t in made} == {(budget.total_iterations, 2, budget.num_val_iterations_per_epoch)}
        for setup, trainer in zip(setups, made):
            assert type(trainer).__name__ == setup.trainer and type(trainer).budget is budget
            assert trainer.setup == setup.name and trainer.initial_lr == budget.learning_rate(setup.name)
            assert trainer.learning_rate_source == f"budget {budget.name or 'base'}"
            trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            assert (trainer.inference_allowed_mirroring_axes is not None) == budget.test_time_mirroring
    assert DEMO.total_iterations == 500 and SEGMENTATION_BUDGETS["DemoLong"].total_iterations == 2_000
    # each setup its own learning rate: end to end from random initialisation lower than a frozen probe's
    assert DEMO.learning_rate("scratch") < DEMO.learning_rate("linear_probe")


def test_every_variant_is_written_out_where_a_search_for_its_name_finds_it():
    """Each setup's trainer at each short budget, of both arms, is a class statement of its own in
    variants.py, a subclass of the setup's trainer that changes only ``budget``."""
    source = (Path(variants.__file__)).read_text()
    for setup in SETUPS.values():
        base = getattr(unet_finetuning if setup.own_unet else segmentation, setup.trainer)
        for budget in SEGMENTATION_BUDGETS.values():
            name = f"{setup.trainer}_{budget.name}"
            assert f"class {name}({setup.trainer}):\n    budget = {'DEMO' if budget.name == 'Demo' else 'DEMO_LONG'}\n" in source
            variant = getattr(variants, name)
            assert variant.__bases__ == (base,) and variant.budget is budget and variant.setup == setup.name
            assert set(vars(variant)) - {"__module__", "__doc__", "__qualname__", "__firstlineno__",
                                         "__static_attributes__"} == {"budget"}


def test_unet_trainers_take_their_budget_and_learning_rate(make_trainer):  # make_trainer: nnU-Net's folders
    """nnU-Net's U-Net setups at a budget: its iterations and each setup's own SGD learning rate;
    the base trainers keep nnU-Net's own schedule (1,000 x 250 iterations, 1e-2)."""
    from unet_plans import unet_plans
    assert NNUNET.total_iterations == 250_000 and NNUNET.learning_rate("unet_scratch") == 1e-2
    for budget in (NNUNET, *SEGMENTATION_BUDGETS.values()):
        for setup in (s for s in SETUPS.values() if s.own_unet):
            name = f"{setup.trainer}_{budget.name}" if budget.name else setup.trainer
            cls = getattr(variants if budget.name else unet_finetuning, name)
            plans = dict(unet_plans("Dataset501_X"), continue_training=False)  # nnU-Net pops that key
            trainer = cls(plans, "3d_fullres", 0, DATASET_JSON, torch.device("cpu"))
            assert (trainer.num_epochs * trainer.num_iterations_per_epoch, trainer.initial_lr) == \
                (budget.total_iterations, budget.learning_rate(setup.name))


@pytest.mark.parametrize("cls", [segmentation.Vox2VecTrainer_NonLinearProbe, variants.Vox2VecTrainer_Demo])
def test_the_environment_sets_one_runs_learning_rate(make_trainer, monkeypatch, cls):
    monkeypatch.setenv(LEARNING_RATE_VARIABLE, "1e-3")
    trainer = make_trainer(cls)
    assert trainer.initial_lr == 1e-3 and trainer.optimizer.param_groups[0]["lr"] == 1e-3
    assert trainer.learning_rate_source == LEARNING_RATE_VARIABLE
    for bad in ("fast", "0", "-1e-3", "inf", "nan"):
        monkeypatch.setenv(LEARNING_RATE_VARIABLE, bad)
        # the constructor is called by nnUNetv2_train: the one line "error: ..." ends the command
        with pytest.raises(SystemExit, match=f"^error: {LEARNING_RATE_VARIABLE}='{bad}' is not a positive learning "
                                             f"rate"):
            make_trainer(cls)


def test_a_budget_without_the_setups_learning_rate_is_refused(make_trainer):
    class Vox2VecTrainer_NoRate(segmentation.Vox2VecTrainer):
        budget = Budget("NoRate", 1, 1, {"linear_probe": 1e-3})

    with pytest.raises(SystemExit, match="^error: the NoRate budget gives no learning rate for 'scratch'"):
        make_trainer(Vox2VecTrainer_NoRate)


def test_nnunet_finds_the_budget_variants_by_name(monkeypatch):
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from vox2vec_nnunet.nnunet_env import trainers_dir
    for name in ("Vox2VecTrainer_Demo", "Vox2VecTrainer_FineTune_DemoLong",
                 "Vox2VecTrainer_NonLinearProbe_RandomInitBN_Demo", "nnUNetTrainer_Vox2VecFineTune_DemoLong",
                 "Vox2VecPretrainTrainer_UNet_DemoLong"):
        found = recursive_find_python_class(str(trainers_dir()), name, current_module=None)
        assert found is getattr(variants, name)


def test_import_published_weights_then_nnunet_loads_them(tmp_path, capsys):
    state = published_state_dict(seed=1)
    released = tmp_path / "vox2vec_fpn.pt"
    torch.save(state, released)
    out = tmp_path / "imported.pth"
    assert import_main([str(released), "-o", str(out), "--axes", "as_is"]) == 0
    assert "no missing or unexpected keys" in capsys.readouterr().out
    network = Vox2VecSegmentationNetwork(1, 14, head="nonlinear")
    load_pretrained_weights(network, str(out))  # nnU-Net's own -pretrained_weights loader
    loaded = network.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_imported_kernels_see_lps_slice_first_arrays_as_the_authors_saw_ras():
    torch.manual_seed(0)
    reference = FPN3d(1, base_channels=2, num_levels=3).eval()
    for module in reference.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    converted, _ = import_fpn_state(reference.state_dict(), "released.pt")
    ours = FPN3d(1, base_channels=2, num_levels=3).eval()
    ours.load_state_dict({k[len("backbone."):]: v for k, v in reference_kernels_to_nnunet_layout(converted).items()})
    ras = torch.randn(1, 1, 16, 12, 8)  # (x: to the right, y: to the front, z: up)
    to_lps = lambda t: t.permute(0, 1, 4, 3, 2).flip(3, 4)  # noqa: E731  (z, y: to the back, x: to the left)
    with torch.no_grad():
        for theirs, mine in zip(reference(ras), ours(to_lps(ras))):
            torch.testing.assert_close(mine, to_lps(theirs), rtol=1e-5, atol=1e-5)


def test_import_refuses_what_is_not_a_released_fpn(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    assert import_main([str(garbage), "-o", str(tmp_path / "o.pth")]) == 2
    assert "weights_only=True" in capsys.readouterr().err
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"first_conv.weight": torch.zeros(1), "hook": print}, unsafe)
    assert import_main([str(unsafe), "-o", str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "(the global print)" in err and "the file is refused" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err and ".." not in err
    assert "\x1b" not in err and len(err.strip().splitlines()) == 1
    partial = published_state_dict()
    del partial["bottom_block.layers.0.layers.2.weight"]
    partial["extra.weight"] = torch.zeros(1)
    incomplete = tmp_path / "incomplete.pt"
    torch.save(partial, incomplete)
    assert import_main([str(incomplete), "-o", str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "1 missing keys ['bottom_block.layers.0.layers.2.weight']" in err and "1 unexpected keys" in err
    assert not (tmp_path / "o.pth").exists()


class NotWeights:
    """An arbitrary class, pickled as a file that is no weights file."""

    def __init__(self) -> None:
        self.numbers = [1, 2, 3]


def test_import_of_a_file_that_is_no_weights_file_says_what_it_expected(tmp_path, capsys):
    """Whatever the file, one line that names it and the published checkpoint, never torch's
    advice to load it with weights_only=False."""
    files = {"arbitrary.pkl": pickle.dumps(NotWeights()), "arbitrary_protocol2.pkl": pickle.dumps(NotWeights(), 2),
             "notes.txt": b"a text file, not weights\n"}
    whole = tmp_path / "whole.pth"
    torch.save(published_state_dict(), whole)
    files["truncated.pth"] = whole.read_bytes()[:50_000]
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "nested.pth")
    for name in [*files, "tensor.pth", "nested.pth"]:
        assert import_main([str(tmp_path / name), "-o", str(tmp_path / "o.pth")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}: ") and len(err.strip().splitlines()) == 1, err
        assert err.strip().endswith(f"Expected {PUBLISHED_FPN_FILE}."), err
        assert "weights_only=False" not in err and "weights_only` set to `False" not in err, err
    assert not (tmp_path / "o.pth").exists()


def test_backbone_of_other_fpn_settings_is_named_with_the_fix():
    small = Vox2VecSegmentationNetwork(1, 3, base_channels=4, num_levels=3).backbone.state_dict()
    paper = Vox2VecSegmentationNetwork(1, 3, base_channels=8, num_levels=3).backbone.state_dict()
    with pytest.raises(Vox2VecError, match="other shapes.*--base_channels"):
        check_backbone_fits(small, paper, "ckpt.pth")
    with pytest.raises(Vox2VecError, match="holds no vox2vec FPN backbone"):
        check_backbone_fits(small, {}, "ckpt.pth")


def test_batchnorm_reestimation_changes_statistics_only():
    from vox2vec_nnunet.training.segmentation import reestimate_batchnorm

    torch.manual_seed(0)
    backbone = FPN3d(1, base_channels=2, num_levels=3)
    weights = {k: v.clone() for k, v in backbone.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.rand(2, 1, 8, 16, 16) * 5 + 3 for _ in range(3)]
    reestimate_batchnorm(backbone, batches)
    assert not backbone.training
    first = backbone.left_blocks[0].layers[0].layers[0]
    features = backbone.first_conv(torch.cat(batches).contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(first.running_mean, features.mean(dim=(0, 2, 3, 4)), rtol=1e-4, atol=1e-5)
    assert first.momentum == 0.1
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in weights.items())


@pytest.mark.parametrize("batchnorm", ["batch", "pretrained"])
def test_finetune_backbone_is_frozen_then_trains_with_its_batchnorm_choice(make_trainer, batchnorm):
    cls = type("FineTuneBN", (Vox2VecTrainer_FineTune,), {"backbone_batchnorm": batchnorm})
    trainer = make_trainer(cls)
    norms = [m for m in trainer.network.backbone.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    trainer.set_backbone_for(trainer.freeze_iterations - 1)
    assert trainer.optimizer.param_groups[1]["lr"] == 0.0 and norms and not any(m.training for m in norms)
    assert not any(p.requires_grad for p in trainer.network.backbone.parameters())
    trainer.set_backbone_for(trainer.freeze_iterations)
    assert trainer.optimizer.param_groups[1]["lr"] == pytest.approx(3e-5)
    assert all(p.requires_grad for p in trainer.network.backbone.parameters())
    assert all(m.training == (batchnorm == "batch") for m in norms)


def test_published_ct_weights_probe_a_two_channel_mr_dataset(tmp_path, monkeypatch, capsys):
    """Imported published (CT, 1-channel) weights: the trainer's check adapts the first
    convolution to the dataset's 2 channels and logs that the weights were pre-trained on CT;
    nnU-Net's own loader then loads the file."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    state = published_state_dict()
    released = tmp_path / "vox2vec_fpn.pt"
    torch.save(state, released)
    imported = tmp_path / "imported.pth"
    assert import_main([str(released), "-o", str(imported), "--axes", "as_is"]) == 0
    settings = default_settings(SEGMENTATION_CONFIGURATION).with_overrides(patch_size=[8, 16, 16], batch_size=2)
    plans = build_plans("Dataset501_X", "Vox2VecPlans", {SEGMENTATION_CONFIGURATION: settings}, "SimpleITKIO",
                        [0, 1, 2], ["T2", "ADC"], [2.0, 1.0, 1.0], [20, 40, 40])
    mr = dict(DATASET_JSON, channel_names={"0": "T2", "1": "ADC"})
    trainer = Vox2VecTrainer_LinearProbe(dict(plans, continue_training=False), SEGMENTATION_CONFIGURATION, 0, mr,
                                         torch.device("cpu"))
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 2, 3,
                                                         enable_deep_supervision=False)
    trainer._check_pretrained_weights(str(imported))
    load_pretrained_weights(trainer.network, str(imported))
    loaded = trainer.network.backbone.state_dict()
    torch.testing.assert_close(loaded["first_conv.weight"], state["first_conv.weight"].expand(-1, 2, -1, -1, -1) / 2)
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k != "first_conv.weight")
    log = open(trainer.log_file).read()
    assert "pre-trained on {'0': 'CT'}" in log and "NOTE: the weights were pre-trained on CT" in log
    three = dict(mr, channel_names={"0": "T1", "1": "T2", "2": "ADC"})
    other = Vox2VecTrainer_LinearProbe(dict(plans, continue_training=False), SEGMENTATION_CONFIGURATION, 0, three,
                                       torch.device("cpu"))
    other.network = other.build_network_architecture(other.plans_manager, other.configuration_manager, 3, 3,
                                                     enable_deep_supervision=False)
    two_channel = tmp_path / "two.pth"
    torch.save({"network_weights": trainer.network.state_dict()}, two_channel)
    with pytest.raises(Vox2VecError, match="takes 2 input channels .* this dataset has 3"):
        other._check_pretrained_weights(str(two_channel))
