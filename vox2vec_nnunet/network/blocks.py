"""Building blocks of the vox2vec FPN and its heads (paper Sect. 3.2; docs/method.md, "Network").

The module and attribute names (``layers``) are those of the published checkpoint's state dict
(340 tensors, docs/method.md, "Network"), so that it loads without renaming.
"""
from __future__ import annotations

import torch
from torch import nn


class ResBlock3d(nn.Module):
    """Pre-activation residual block: BN -> ReLU -> Conv -> BN -> ReLU -> Conv, plus identity.

    Convolutions have biases and BatchNorm uses PyTorch's defaults; nothing follows the sum
    (docs/method.md, "Network"). ``kernel_size`` is 3 in the FPN and 1 in the non-linear
    head (paper Sect. 3.4: the head "replicates the UNet's decoder but sets the kernel size of all
    convolutions to 1").

    The ReLUs work in place on the BatchNorm outputs (BatchNorm's backward needs its input, not
    its output) and the identity is added in place to the last convolution's output (its
    backward needs neither): the same values and gradients with three fewer full-size tensors
    per block, which at full resolution is most of the pre-training step's memory traffic.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.layers = nn.Sequential(
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).add_(x)


class ResStack3d(nn.Module):
    """``num_blocks`` residual blocks at a constant width, one level of the FPN."""

    def __init__(self, channels: int, num_blocks: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ResBlock3d(channels, kernel_size) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return x


def crop_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Crop ``x`` at the far end to the spatial size of ``reference``.

    The encoder pools with ``ceil_mode``, so an odd size ``s`` becomes ``ceil(s / 2)`` and the
    nearest-neighbour upsampling by 2 overshoots by at most one voxel; cropping restores the
    skip's size (docs/method.md, "Network": "nearest upsampling x2, crop to the skip's size").
    This is what lets the FPN take patch sizes that are not multiples of 2^(levels-1).
    """
    z, y, w = reference.shape[2:]
    return x[:, :, :z, :y, :w]
