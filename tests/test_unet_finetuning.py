"""nnUNetTrainer_Vox2VecFineTune: the warm-up schedule and the frozen encoder, in process."""
from __future__ import annotations

import pytest
import torch

from unet_plans import unet_plans
from vox2vec_nnunet.training.unet_finetuning import finetune_lr, nnUNetTrainer_Vox2VecFineTune, warmup_epochs

DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
                "numTraining": 4, "file_ending": ".nii.gz"}


@pytest.fixture
def plans(tmp_path, monkeypatch):
    """nnU-Net's folders set, and the plans of a small U-Net."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    return dict(unet_plans("Dataset501_X"), continue_training=False)


@pytest.fixture
def trainer(plans):
    trainer = nnUNetTrainer_Vox2VecFineTune(plans, "3d_fullres", 0, DATASET_JSON, torch.device("cpu"))
    trainer.num_epochs = 40
    trainer.network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 3,
                                                         enable_deep_supervision=False)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    return trainer


def test_schedule_warms_up_twice_then_follows_nnunets_poly():
    assert [warmup_epochs(n) for n in (1, 10, 40, 1000)] == [1, 1, 2, 50]
    lr = [finetune_lr(e, 1000, 1e-2) for e in range(1000)]
    assert lr[0] == pytest.approx(1e-2 / 50) and lr[49] == pytest.approx(1e-2)     # decoder warm-up
    assert lr[50] == pytest.approx(1e-2 / 50) and lr[99] == pytest.approx(1e-2)    # whole-network warm-up
    assert lr[100] == pytest.approx(1e-2) and lr[550] == pytest.approx(1e-2 * 0.5 ** 0.9)
    assert all(a >= b for a, b in zip(lr[100:], lr[101:])) and 0 < lr[-1] < 1e-4


def test_encoder_is_truly_frozen_in_the_first_stage_and_trains_after(trainer):
    network = trainer.network
    x, steps = torch.randn(2, 1, 12, 20, 24), 3

    def train_epoch(epoch: int) -> None:
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        for _ in range(steps):
            trainer.optimizer.zero_grad(set_to_none=True)
            network(x).square().mean().backward()
            trainer.optimizer.step()

    encoder_before = {k: v.clone() for k, v in network.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in network.decoder.state_dict().items() if not k.startswith("encoder.")}
    train_epoch(0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.initial_lr / 2)
    assert all(p.grad is None for p in network.encoder.parameters())
    assert all(torch.equal(encoder_before[k], v) for k, v in network.encoder.state_dict().items())
    assert all(trainer.optimizer.state[p] == {} for p in network.encoder.parameters())  # no momentum either
    changed = [k for k, v in network.decoder.state_dict().items() if k in decoder_before
               and not torch.equal(decoder_before[k], v)]
    assert any(k.startswith("seg_layers.") for k in changed) and any(k.startswith("stages.") for k in changed)
    train_epoch(2)  # the whole-network warm-up
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.initial_lr / 2)
    assert all(p.requires_grad for p in network.parameters())
    assert any(not torch.equal(encoder_before[k], v) for k, v in network.encoder.state_dict().items())


def test_a_vox2vec_checkpoint_loads_every_non_head_tensor_with_nnunets_loader(trainer, tmp_path):
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    from vox2vec_nnunet.network.unet import Vox2VecUNet

    torch.manual_seed(5)
    pretraining = Vox2VecUNet(trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                                 1, 2, enable_deep_supervision=False))
    checkpoint = tmp_path / "vox2vec.pth"
    torch.save({"network_weights": pretraining.state_dict()}, checkpoint)
    load_pretrained_weights(trainer.network, str(checkpoint))
    pretrained, loaded = pretraining.state_dict(), trainer.network.state_dict()
    non_head = [k for k in loaded if ".seg_layers." not in k]
    assert len(non_head) > 100 and all(torch.equal(loaded[k], pretrained[k]) for k in non_head)


def test_the_schedule_control_refuses_pretrained_weights(plans, monkeypatch):
    from vox2vec_nnunet.training.unet_finetuning import nnUNetTrainer_Vox2VecScratchWarmup

    control = nnUNetTrainer_Vox2VecScratchWarmup(plans, "3d_fullres", 0, DATASET_JSON, torch.device("cpu"))
    monkeypatch.setattr("sys.argv", ["nnUNetv2_train", "501", "3d_fullres", "0", "-pretrained_weights", "w.pth"])
    with pytest.raises(SystemExit, match="^error: .*drop -pretrained_weights"):
        control.initialize()


def test_one_channel_weights_fine_tune_a_two_channel_dataset_through_nnunets_loader(plans, tmp_path, monkeypatch):
    """The trainer's initialize checks -pretrained_weights and adapts the stem (1 -> 2 channels),
    logging what the weights were pre-trained on; nnU-Net's own loader then loads the file."""
    import numpy as np
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from vox2vec_nnunet.network.unet import Vox2VecUNet
    from vox2vec_nnunet.training.unet_finetuning import nnUNetTrainer_Vox2VecScratch

    mr = dict(DATASET_JSON, channel_names={"0": "T2", "1": "ADC"})
    plans["configurations"]["3d_fullres"].update(normalization_schemes=["ZScoreNormalization"] * 2,
                                                 use_mask_for_norm=[False, False])
    folder = tmp_path / "nnUNet_preprocessed" / "Dataset501_X" / "nnUNetResEncUNetTinyPlans_3d_fullres"
    folder.mkdir(parents=True)
    nnUNetDatasetNumpy.save_case(np.zeros((2, 12, 20, 24), np.float32), np.zeros((1, 12, 20, 24), np.int8), {},
                                 str(folder / "case"))
    torch.manual_seed(5)
    manager = PlansManager(plans)
    one_channel = nnUNetTrainer_Vox2VecScratch.build_network_architecture(
        manager, manager.get_configuration("3d_fullres"), 1, 2, False)
    weights = tmp_path / "ct.pth"
    torch.save({"network_weights": Vox2VecUNet(one_channel).state_dict(), "vox2vec": {"channel_names": {"0": "CT"}}},
               weights)
    monkeypatch.setattr("sys.argv", ["nnUNetv2_train", "501", "3d_fullres", "0", "-pretrained_weights", str(weights)])
    trainer = nnUNetTrainer_Vox2VecFineTune(plans, "3d_fullres", 0, mr, torch.device("cpu"))
    trainer.initialize()
    load_pretrained_weights(trainer.network, str(weights))
    log = open(trainer.log_file).read()
    assert "first convolution adapted from 1 to 2 input channel(s)" in log
    assert "NOTE: the weights were pre-trained on CT, this dataset is not CT" in log
    stem = "encoder.stem.convs.0.conv.weight"
    torch.testing.assert_close(trainer.network.state_dict()[stem], one_channel.state_dict()[stem].expand(
        -1, 2, -1, -1, -1) / 2)
