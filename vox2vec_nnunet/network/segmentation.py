"""The segmentation network nnU-Net builds from the plans: vox2vec FPN + head (paper Sect. 3.4).

nnU-Net instantiates it from ``configurations[cfg]["architecture"]`` as
``Vox2VecSegmentationNetwork(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``
(nnU-Net's ``get_network_from_plans``). Parameter names are chosen for nnU-Net's
``-pretrained_weights``: the backbone
lives under ``backbone.`` with the published FPN's names, and the head under
``decoder.seg_layers.``, the one key fragment nnU-Net's loader does not require in a checkpoint.
So a checkpoint that holds only a backbone (pre-training, or the imported published weights)
loads into any head, and the head keeps its fresh initialisation.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from vox2vec_nnunet.network.fpn import FPN3d
from vox2vec_nnunet.network.heads import FPNLinearHead, FPNNonLinearHead

HeadName = Literal["linear", "nonlinear"]
HEADS: dict[str, type[nn.Module]] = {"linear": FPNLinearHead, "nonlinear": FPNNonLinearHead}


def fpn_strides(num_levels: int) -> list[list[int]]:
    """Per-level downsampling of the FPN in nnU-Net's ``strides`` convention."""
    return [[1, 1, 1]] + [[2, 2, 2]] * (num_levels - 1)


class SegmentationDecoder(nn.Module):
    """Holds the head as ``seg_layers`` and the ``deep_supervision`` switch nnU-Net toggles.

    Deep supervision (off in every vox2vec trainer, as in the paper) is available with the
    linear head, whose running sums at coarser levels are logits of the same linear classifier;
    the non-linear head has no per-level outputs and refuses it.
    """

    def __init__(self, head: nn.Module, deep_supervision: bool) -> None:
        super().__init__()
        self.seg_layers = head
        self.deep_supervision = deep_supervision

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if not self.deep_supervision:
            return self.seg_layers(pyramid)
        if not isinstance(self.seg_layers, FPNLinearHead):
            raise RuntimeError(
                "Deep supervision is only available with the linear FPN head; vox2vec trains the "
                "non-linear head without it (paper Sect. 4.2). Use a trainer with "
                "enable_deep_supervision = False (all vox2vec trainers do).")
        # nnU-Net expects one output per level but the deepest (see _get_deep_supervision_scales).
        return self.seg_layers(pyramid, return_all_levels=True)[:-1]


class Vox2VecSegmentationNetwork(nn.Module):
    """FPN backbone + linear or non-linear head, built purely from constructor arguments.

    Args:
        input_channels: image channels (nnU-Net passes it).
        num_classes: segmentation outputs (nnU-Net passes it).
        deep_supervision: nnU-Net's switch, see :class:`SegmentationDecoder`.
        head: ``"linear"`` or ``"nonlinear"`` (paper Sect. 3.4).
        base_channels: FPN level-0 channels (paper: 16).
        num_levels: FPN levels (paper: 6).
        strides: accepted for nnU-Net (it derives deep-supervision scales from it); must be
            the FPN's fixed pooling, ``fpn_strides(num_levels)``.
    """

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False,
                 head: HeadName = "nonlinear", base_channels: int = 16, num_levels: int = 6,
                 strides: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"Unknown head {head!r}; choose one of {sorted(HEADS)}")
        if strides is not None and [list(s) for s in strides] != fpn_strides(num_levels):
            raise ValueError(f"The vox2vec FPN pools by 2 on every axis at each level; strides must be "
                             f"{fpn_strides(num_levels)} for num_levels={num_levels}, got {strides}")
        self.backbone = FPN3d(input_channels, base_channels, num_levels)
        self.decoder = SegmentationDecoder(HEADS[head](self.backbone.level_channels, num_classes),
                                           deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.backbone(x))
