"""The vox2vec 3D Feature Pyramid Network (paper Sect. 3.2, Fig. 1 right; docs/method.md, "Network").

A UNet-like encoder-decoder whose decoder keeps every level: level ``i`` has
``base_channels * 2**i`` channels at ``1 / 2**i`` of the input resolution. With 16 base
channels and 6 levels a voxel's representation (all levels concatenated) has
16 + 32 + ... + 512 = 1008 dimensions. Attribute names follow the published checkpoint
(``first_conv``, ``left_blocks``, ``down_blocks``, ``bottom_block``, ``up_blocks``,
``skip_blocks``, ``right_blocks``), so its state dict loads as is.
"""
from __future__ import annotations

import torch
from torch import nn

from vox2vec_nnunet.network.blocks import ResStack3d, crop_to

ONEDNN_SINGLE_PATCH_MIN = 20_480
"""For a batch of one, PyTorch's CPU convolution takes oneDNN only when ``N * C * D * H`` of its
input exceeds this (ATen's ``use_mkldnn``); below it, its slow reference kernel."""


class FPN3d(nn.Module):
    """Feature pyramid backbone; ``forward`` returns the levels, full resolution first.

    Args:
        in_channels: image channels (1 for CT).
        base_channels: channels of level 0 (paper: 16).
        num_levels: pyramid levels (paper: 6); the input is pooled ``num_levels - 1`` times.
        blocks_per_level: residual blocks per encoder/decoder level (reference: 2).
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 16, num_levels: int = 6,
                 blocks_per_level: int = 2) -> None:
        super().__init__()
        if num_levels < 2:
            raise ValueError(f"FPN3d needs at least 2 levels, got num_levels={num_levels}")
        if base_channels < 1 or in_channels < 1:
            raise ValueError(f"channels must be positive, got in_channels={in_channels}, "
                             f"base_channels={base_channels}")
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.num_levels = num_levels
        widths = [base_channels * 2 ** i for i in range(num_levels)]
        self.first_conv = nn.Conv3d(in_channels, base_channels, kernel_size=3, padding=1)
        self.left_blocks = nn.ModuleList(ResStack3d(c, blocks_per_level) for c in widths[:-1])
        self.down_blocks = nn.ModuleList(
            nn.Sequential(nn.MaxPool3d(kernel_size=2, ceil_mode=True), nn.Conv3d(c, 2 * c, kernel_size=1))
            for c in widths[:-1])
        self.bottom_block = ResStack3d(widths[-1], blocks_per_level)
        # Decoder modules are stored deepest level first, as in the published checkpoint.
        decoder_widths = widths[-2::-1]
        self.up_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv3d(2 * c, c, kernel_size=1), nn.Upsample(scale_factor=2, mode="nearest"))
            for c in decoder_widths)
        self.skip_blocks = nn.ModuleList(nn.Conv3d(c, c, kernel_size=1) for c in decoder_widths)
        self.right_blocks = nn.ModuleList(ResStack3d(c, blocks_per_level) for c in decoder_widths)
        # Channels-last weights and activations: on the CPU, 3-D convolution backward is several
        # times faster than in the default layout (python -m vox2vec_nnunet.perf.memory_format_benchmark).
        self.memory_format = torch.channels_last_3d
        self.to(memory_format=self.memory_format)

    @property
    def level_channels(self) -> list[int]:
        """Channels of each output level, full resolution first."""
        return [self.base_channels * 2 ** i for i in range(self.num_levels)]

    @property
    def representation_dim(self) -> int:
        """Dimension of a voxel's representation (1008 for the paper's FPN)."""
        return sum(self.level_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 5:
            raise ValueError(f"FPN3d expects a (batch, channels, z, y, x) tensor, got shape {tuple(x.shape)}")
        if self.single_patch_is_slow(x):
            return [level[:1] for level in self.levels(x.expand(2, *x.shape[1:]))]
        return self.levels(x)

    def single_patch_is_slow(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is one small patch that PyTorch would convolve with its slow CPU kernel.

        nnU-Net's sliding-window inference (validation, ``nnUNetv2_predict``) feeds one patch at a
        time; for a small patch (``base_channels * D * H`` at most :data:`ONEDNN_SINGLE_PATCH_MIN`,
        e.g. the demo's 8 channels x 16 x 64) PyTorch convolves a batch of one with its reference
        kernel, while a batch of two takes oneDNN. ``forward`` then runs the patch as a batch of
        two copies: the same result (eval mode: every sample is normalised alone) 3-4x faster
        (``python -m vox2vec_nnunet.perf.inference_tile_benchmark``). In training mode the batch is
        never changed (BatchNorm's statistics would count the copy); large patches, where oneDNN
        is already taken, are not doubled.
        """
        return (x.shape[0] == 1 and x.device.type == "cpu" and not self.training
                and self.base_channels * x.shape[2] * x.shape[3] <= ONEDNN_SINGLE_PATCH_MIN)

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid of ``x``, full resolution first (``forward`` without the single-patch path)."""
        x = self.first_conv(x.contiguous(memory_format=self.memory_format))
        skips = []
        for left, down in zip(self.left_blocks, self.down_blocks):
            x = left(x)
            skips.append(x)
            x = down(x)
        x = self.bottom_block(x)
        pyramid = [x]
        for up, skip, right in zip(self.up_blocks, self.skip_blocks, self.right_blocks):
            feature = skips.pop()
            x = right(crop_to(up(x), feature) + skip(feature))
            pyramid.append(x)
        return pyramid[::-1]


def voxel_representations(pyramid: list[torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
    """Read out the representations of chosen voxels from a feature pyramid.

    A voxel's representation is the concatenation of the level-``i`` feature vectors at the
    voxel's cell ``floor(coordinate / 2**i)`` (nearest neighbour, no interpolation), level 0
    first (paper Sect. 3.2, Fig. 1 right).

    Args:
        pyramid: the FPN's output, full resolution first.
        positions: ``(N, 4)`` integer tensor of ``[batch index, z, y, x]`` at full resolution.

    Returns:
        ``(N, sum of level channels)`` tensor.
    """
    if positions.ndim != 2 or positions.shape[1] != 4:
        raise ValueError(f"positions must have shape (N, 4), got {tuple(positions.shape)}")
    positions = positions.to(device=pyramid[0].device, dtype=torch.long)
    batch, coords = positions[:, 0], positions[:, 1:]
    features = []
    for level, fmap in enumerate(pyramid):
        z, y, x = (coords >> level).unbind(1)
        features.append(fmap[batch, :, z, y, x])
    return torch.cat(features, dim=1)


def dense_representations(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """All voxels' representations as a full-resolution map ``(B, sum of channels, Z, Y, X)``.

    Memory grows with 1008 channels at full resolution: meant for inspecting a single image
    (embedding pictures), not for training.
    """
    full = pyramid[0]
    maps = [full]
    for level, fmap in enumerate(pyramid[1:], start=1):
        up = fmap
        for axis in (2, 3, 4):
            up = torch.repeat_interleave(up, 2 ** level, dim=axis)
        maps.append(crop_to(up, full))
    return torch.cat(maps, dim=1)
