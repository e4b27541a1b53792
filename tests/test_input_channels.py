"""Pre-trained weights between channel counts and modalities: the first convolution's rule, and
nnU-Net's own -pretrained_weights loader taking the adapted weights (FPN and nnU-Net U-Net)."""
from __future__ import annotations

import pytest
import torch
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from unet_plans import TINY_RESENC
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.input_channels import adapt_input_channels, checkpoint_channel_names, prepare_pretrained_weights
from vox2vec_nnunet.network.fpn import FPN3d
from vox2vec_nnunet.network.segmentation import Vox2VecSegmentationNetwork

MR = {"0": "T2", "1": "ADC"}


def _conv(channels: int, seed: int = 0) -> torch.nn.Conv3d:
    torch.manual_seed(seed)
    return torch.nn.Conv3d(channels, 5, 3, padding=1)


def test_one_to_c_and_c_to_one_against_dense_convolutions():
    """1 -> C: the C-channel convolution of an image repeated in every channel is the pre-trained
    one-channel convolution; C -> 1 (the sum) inverts it."""
    x = torch.randn(2, 1, 6, 7, 8, dtype=torch.float64)
    single = _conv(1).double()
    for channels in (2, 3, 4):
        wide = _conv(channels, seed=1).double()
        with torch.no_grad():
            wide.weight.copy_(adapt_input_channels(single.weight, channels))
            wide.bias.copy_(single.bias)
        torch.testing.assert_close(wide(x.expand(-1, channels, -1, -1, -1)), single(x), rtol=0, atol=1e-12)
        back = adapt_input_channels(wide.weight, 1)
        torch.testing.assert_close(back, single.weight, rtol=0, atol=1e-12)
        images = torch.randn(2, 1, 6, 7, 8, dtype=torch.float64)
        torch.testing.assert_close(torch.nn.functional.conv3d(images, back, wide.bias, padding=1),
                                   wide(images.expand(-1, channels, -1, -1, -1)), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="2 input channels cannot be adapted to 3"):
        adapt_input_channels(torch.zeros(5, 2, 3, 3, 3), 3)


def _checkpoint(network: torch.nn.Module, channels: dict | None) -> dict:
    return {"network_weights": network.state_dict(), **({"vox2vec": {"channel_names": channels}} if channels else {})}


def test_nnunets_loader_takes_a_one_channel_fpn_into_a_two_channel_network(tmp_path):
    torch.manual_seed(0)
    pretrained = Vox2VecSegmentationNetwork(1, 3, base_channels=4, num_levels=3).eval()
    for module in pretrained.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
    checkpoint = _checkpoint(pretrained, {"0": "CT"})
    path = tmp_path / "ct.pth"
    torch.save(checkpoint, path)
    network = Vox2VecSegmentationNetwork(2, 3, base_channels=4, num_levels=3)
    adapted, line = prepare_pretrained_weights(network, checkpoint, checkpoint["network_weights"], path, MR)
    assert adapted["backbone.first_conv.weight"].shape == (4, 2, 3, 3, 3)
    assert "first convolution adapted from 1 to 2 input channel(s)" in line and "the pre-trained kernel / 2" in line
    assert "pre-trained on {'0': 'CT'}" in line and "NOTE: the weights were pre-trained on CT" in line
    load_pretrained_weights(network, str(path))
    assert network.state_dict()["backbone.first_conv.weight"].shape == (4, 2, 3, 3, 3)  # the hooks are gone
    network.eval()
    x = torch.randn(2, 1, 8, 16, 16)
    with torch.no_grad():
        for mine, theirs in zip(network.backbone(x.expand(-1, 2, -1, -1, -1)), pretrained.backbone(x)):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("found, channels", [(2, 1), (1, 2)])
def test_nnunets_loader_takes_a_unet_between_one_and_two_channels(found, channels, tmp_path):
    """nnU-Net's ResEnc U-Net (its stem under several names): C -> 1 by the sum, 1 -> C by the
    kernel / C, so the network on an image repeated in each of its channels is the pre-trained
    network on that image repeated in each of the pre-trained channels."""
    def unet(channels: int) -> torch.nn.Module:
        return get_network_from_plans(TINY_RESENC["network_class_name"], TINY_RESENC["arch_kwargs"],
                                      TINY_RESENC["_kw_requires_import"], channels, 2, allow_init=True,
                                      deep_supervision=False)

    torch.manual_seed(0)
    pretrained = unet(found).eval()
    checkpoint = {"network_weights": pretrained.state_dict()}  # an older checkpoint: no channel record
    path = tmp_path / "mr.pth"
    torch.save(checkpoint, path)
    network = unet(channels)
    _, line = prepare_pretrained_weights(network, checkpoint, checkpoint["network_weights"], path,
                                         {str(c): f"T{c + 1}" for c in range(channels)})
    assert "unknown channels (the checkpoint records none)" in line and f"from {found} to {channels}" in line
    assert "NOTE" not in line
    load_pretrained_weights(network, str(path))
    network.decoder.seg_layers.load_state_dict(pretrained.decoder.seg_layers.state_dict())  # nnU-Net skips them
    network.eval()
    x = torch.randn(1, 1, 12, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(network(x.expand(-1, channels, -1, -1, -1)),
                                   pretrained(x.expand(-1, found, -1, -1, -1)), rtol=1e-4, atol=1e-5)


def test_channel_counts_that_cannot_be_adapted_are_refused_with_the_rule(tmp_path):
    pretrained = FPN3d(2, base_channels=4, num_levels=3)
    checkpoint = {"network_weights": {f"backbone.{k}": v for k, v in pretrained.state_dict().items()}}
    network = Vox2VecSegmentationNetwork(3, 2, base_channels=4, num_levels=3)
    with pytest.raises(Vox2VecError, match=r"mr.pth: its first convolution takes 2 input channels .* this dataset "
                                           r"has 3 .*1 -> C: the kernel / C for every channel; C -> 1: the sum"):
        prepare_pretrained_weights(network, checkpoint, checkpoint["network_weights"], "mr.pth",
                                   {"0": "T1", "1": "T2", "2": "FLAIR"})
    same = Vox2VecSegmentationNetwork(2, 2, base_channels=4, num_levels=3)
    state, line = prepare_pretrained_weights(same, checkpoint, checkpoint["network_weights"], "mr.pth", MR)
    assert "adapted" not in line and state is not checkpoint["network_weights"]
    assert all(torch.equal(v, checkpoint["network_weights"][k]) for k, v in state.items())


def test_channel_names_a_checkpoint_records():
    assert checkpoint_channel_names({"vox2vec": {"seed": 0, "channel_names": {"0": "T2"}}}) == {"0": "T2"}
    assert checkpoint_channel_names({"init_args": {"dataset_json": {"channel_names": {"0": "CT"}}}}) == {"0": "CT"}
    assert checkpoint_channel_names({"vox2vec": {"seed": 0}, "network_weights": {}}) is None
