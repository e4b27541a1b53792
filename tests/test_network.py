"""The FPN, its heads and the nnU-Net segmentation network (paper Sect. 3.2, 3.4; docs/method.md,
"Network" and "Heads")."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from conftest import published_state_dict
from vox2vec_nnunet.network.fpn import FPN3d, dense_representations, voxel_representations
from vox2vec_nnunet.network.heads import FPNLinearHead, FPNNonLinearHead
from vox2vec_nnunet.network.projector import Projector
from vox2vec_nnunet.loss import info_nce
from vox2vec_nnunet.network.segmentation import Vox2VecSegmentationNetwork
from vox2vec_nnunet.network.vox2vec import Vox2Vec


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_fpn_parameter_count_and_flops():
    with torch.device("meta"):
        fpn = FPN3d(in_channels=1, base_channels=16, num_levels=6)
        x = torch.zeros(1, 1, 128, 128, 32)
    assert n_params(fpn) == 47_624_448
    assert fpn.representation_dim == 1008
    with FlopCounterMode(display=False) as counter:
        pyramid = fpn(x)
    assert abs(counter.get_total_flops() / 1e9 - 114.5) <= 0.02 * 114.5
    assert [tuple(p.shape[1:]) for p in pyramid] == [
        (16, 128, 128, 32), (32, 64, 64, 16), (64, 32, 32, 8), (128, 16, 16, 4), (256, 8, 8, 2), (512, 4, 4, 1)]


def test_head_parameter_counts_for_13_classes():
    channels = FPN3d(1, 16, 6).level_channels
    assert n_params(FPNLinearHead(channels, 13)) == 13_117
    assert n_params(FPNNonLinearHead(channels, 13)) == 968_029


@pytest.mark.parametrize("head", ["linear", "nonlinear"])
@pytest.mark.parametrize("shape", [(16, 32, 32), (13, 30, 37), (5, 9, 17)])
def test_segmentation_network_accepts_sizes_that_are_not_multiples_of_the_pooling(head, shape):
    net = Vox2VecSegmentationNetwork(input_channels=1, num_classes=3, head=head, base_channels=4, num_levels=4)
    out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 3, *shape)


def test_voxel_representation_is_the_nearest_cell_of_every_level():
    torch.manual_seed(0)
    fpn = FPN3d(1, base_channels=2, num_levels=4).eval()
    pyramid = fpn(torch.randn(2, 1, 9, 14, 11))
    positions = torch.tensor([[0, 0, 0, 0], [1, 8, 13, 10], [0, 5, 7, 3], [1, 3, 2, 9]])
    reps = voxel_representations(pyramid, positions)
    assert reps.shape == (4, 2 + 4 + 8 + 16)
    for row, (b, z, y, x) in zip(reps, positions.tolist()):
        expected = torch.cat([p[b, :, z // 2 ** i, y // 2 ** i, x // 2 ** i] for i, p in enumerate(pyramid)])
        assert torch.equal(row, expected)
    dense = dense_representations(pyramid)
    assert dense.shape == (2, 30, 9, 14, 11)
    b, z, y, x = positions.T
    assert torch.equal(dense[b, :, z, y, x], reps)


def test_linear_head_is_a_linear_classifier_on_the_concatenated_representation():
    torch.manual_seed(0)
    fpn = FPN3d(1, base_channels=2, num_levels=4).eval()
    head = FPNLinearHead(fpn.level_channels, num_classes=5)
    with torch.no_grad():
        pyramid = fpn(torch.randn(1, 1, 9, 14, 11))
        logits = head(pyramid)
        weight = torch.cat([layer.weight[:, :, 0, 0, 0] for layer in head.layers], dim=1)
        dense = dense_representations(pyramid)[0].flatten(1)  # (30, voxels)
        expected = weight @ dense + head.layers[0].bias[:, None]
    torch.testing.assert_close(logits[0].flatten(1), expected, rtol=1e-5, atol=1e-5)


def test_published_checkpoint_names_load_into_the_fpn_and_under_backbone():
    state = published_state_dict()
    fpn = FPN3d(1, 16, 6)
    assert fpn.load_state_dict(state, strict=True)
    assert all(torch.equal(fpn.state_dict()[k], v) for k, v in state.items())
    net = Vox2VecSegmentationNetwork(1, 14, head="linear")
    result = net.load_state_dict({f"backbone.{k}": v for k, v in state.items()}, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".seg_layers." in k for k in result.missing_keys)


def test_deep_supervision_contract():
    net = Vox2VecSegmentationNetwork(1, 3, deep_supervision=True, head="linear", base_channels=2, num_levels=4)
    outs = net(torch.randn(1, 1, 16, 16, 16))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 16, 16), (8, 8, 8), (4, 4, 4)]
    net.decoder.deep_supervision = False
    assert net(torch.randn(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
    nonlinear = Vox2VecSegmentationNetwork(1, 3, deep_supervision=True, head="nonlinear", base_channels=2,
                                           num_levels=3)
    with pytest.raises(RuntimeError, match="Deep supervision"):
        nonlinear(torch.randn(1, 1, 8, 8, 8))


def test_bad_constructor_arguments_are_named():
    with pytest.raises(ValueError, match="Unknown head"):
        Vox2VecSegmentationNetwork(1, 2, head="mlp")
    with pytest.raises(ValueError, match="strides"):
        Vox2VecSegmentationNetwork(1, 2, num_levels=3, strides=[[1, 1, 1], [2, 2, 2], [1, 2, 2]])
    with pytest.raises(ValueError, match="expects a"):
        FPN3d(1, 2, 3)(torch.randn(1, 8, 8, 8))


def test_projector_outputs_unit_vectors():
    z = Projector(in_dim=30, out_dim=8)(torch.randn(16, 30))
    assert z.shape == (16, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(16))


def _reference_forward(model: Vox2Vec, patches: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The pre-training forward written plainly (default layout, out-of-place ReLU and sums,
    read-out by advanced indexing), on the parameters of ``model``."""
    fpn = model.backbone

    def stack(levels: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        for block in levels.layers:
            norm1, _, conv1, norm2, _, conv2 = block.layers
            x = x + conv2(F.relu(norm2(conv1(F.relu(norm1(x))))))
        return x

    x = fpn.first_conv(patches)
    skips = []
    for left, down in zip(fpn.left_blocks, fpn.down_blocks):
        x = stack(left, x)
        skips.append(x)
        x = down(x)
    pyramid = [stack(fpn.bottom_block, x)]
    for up, skip, right in zip(fpn.up_blocks, fpn.skip_blocks, fpn.right_blocks):
        feature = skips.pop()
        x = up(pyramid[0])[:, :, :feature.shape[2], :feature.shape[3], :feature.shape[4]] + skip(feature)
        pyramid.insert(0, stack(right, x))
    batch, coords = positions[:, 0], positions[:, 1:]
    features = [fmap[batch, :, *(coords >> level).unbind(1)] for level, fmap in enumerate(pyramid)]
    return model.projector(torch.cat(features, dim=1))


def _dense_info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def test_pretraining_step_matches_a_plain_float64_reference():
    """The model as it trains (float32, channels-last FPN, read-out by rows, in-place ReLU and
    sums, blockwise InfoNCE) against the same weights computed plainly in float64 with the dense
    2N x 2N InfoNCE: the loss within 1e-5, the parameter gradients within 3e-2 of their norm
    (float32 rounding, amplified by BatchNorm over the few voxels of the deep levels of this
    tiny batch, is 0.6-1.1e-2 here in either memory layout; a wrong read-out or loss is O(1))."""
    torch.manual_seed(0)
    model = Vox2Vec(1, base_channels=4, num_levels=4)
    reference = copy.deepcopy(model).double().to(memory_format=torch.contiguous_format)
    patches = torch.rand(4, 1, 8, 32, 32)
    positions = torch.cat([torch.stack([torch.full((64,), v)] + [torch.randint(0, s, (64,)) for s in (8, 32, 32)], 1)
                           for v in range(4)])
    loss = info_nce(*model(patches, positions).chunk(2))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected_loss = _dense_info_nce(*_reference_forward(reference, patches.double(), positions).chunk(2))
    expected = torch.autograd.grad(expected_loss, list(reference.parameters()))
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    error = torch.sqrt(sum(((g.double() - e) ** 2).sum() for g, e in zip(grads, expected)))
    assert (error / torch.sqrt(sum((e ** 2).sum() for e in expected))).item() < 3e-2


def test_one_small_patch_in_eval_mode_runs_as_a_batch_of_two_with_the_same_result():
    """nnU-Net's sliding window feeds one patch at a time; a small one is run as a batch of two
    copies (oneDNN instead of PyTorch's slow kernel for a batch of one): same values and input
    gradient as the patch inside an ordinary batch of two, the same convolution kernels as that
    batch, and never in training mode."""
    torch.manual_seed(0)
    fpn = FPN3d(1, 4, 3).eval()
    patch = torch.randn(1, 1, 8, 24, 20, requires_grad=True)
    other = torch.randn(1, 1, 8, 24, 20)
    assert fpn.single_patch_is_slow(patch)
    single = fpn(patch)
    (sum(level.sum() for level in single)).backward()
    alone_grad = patch.grad.clone()
    patch.grad = None
    batch = fpn(torch.cat([patch, other]))
    (sum(level[:1].sum() for level in batch)).backward()
    for a, b in zip(single, batch):
        assert a.shape[0] == 1 and torch.allclose(a, b[:1], atol=1e-5, rtol=1e-5)
    assert torch.allclose(alone_grad, patch.grad, atol=1e-5, rtol=1e-5)

    def slow_kernel_calls(x: torch.Tensor) -> int:
        with torch.no_grad(), torch.autograd.profiler.profile() as prof:
            fpn(x)
        return sum(e.count for e in prof.key_averages() if e.key == "aten::slow_conv3d_forward")

    assert slow_kernel_calls(patch.detach()) == slow_kernel_calls(torch.cat([patch.detach(), other]))
    assert not fpn.train().single_patch_is_slow(patch)
    assert not FPN3d(1, 16, 3).eval().single_patch_is_slow(torch.zeros(1, 1, 32, 128, 128))  # oneDNN already
