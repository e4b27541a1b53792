"""Segmentation heads on top of the FPN's feature pyramid (paper Sect. 3.4; docs/method.md, "Heads")."""
from __future__ import annotations

import torch
from torch import nn

from vox2vec_nnunet.network.blocks import ResBlock3d, crop_to


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


class FPNLinearHead(nn.Module):
    """Linear FPN head: a voxel-wise linear classifier on the concatenated representation.

    Each level gets its own Conv1^3 to ``num_classes`` (bias only on level 0); starting from the
    deepest level's logits, the running sum is upsampled x2 (nearest), cropped and added to the
    next level's. Because upsampling is nearest-neighbour this equals a linear layer applied to
    each voxel's 1008-d vector (paper Sect. 3.4). 13,117 parameters for 13 classes.

    ``forward(..., return_all_levels=True)`` also returns the running sums at the coarser levels:
    they are the logits of the same classifier restricted to levels >= i, which is what the
    network hands nnU-Net as deep-supervision outputs.
    """

    def __init__(self, level_channels: list[int], num_classes: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Conv3d(c, num_classes, kernel_size=1, bias=(i == 0)) for i, c in enumerate(level_channels))

    def forward(self, pyramid: list[torch.Tensor], return_all_levels: bool = False
                ) -> torch.Tensor | list[torch.Tensor]:
        logits = [layer(f) for layer, f in zip(self.layers, pyramid)]
        x = logits[-1]
        running = [x]
        for level_logits in reversed(logits[:-1]):
            x = crop_to(_upsample2(x), level_logits) + level_logits
            running.append(x)
        return running[::-1] if return_all_levels else x


class FPNNonLinearHead(nn.Module):
    """Non-linear head: the FPN decoder with every kernel size 1 (paper Sect. 3.4).

    bottom: residual block (kernel 1) at the deepest width; then per level, deepest first,
    Conv1^3(2c -> c) + nearest upsampling, crop, add Conv1^3(c -> c)(level feature), residual
    block (kernel 1) at c; finally Conv1^3(base -> num_classes). 968,029 parameters for 13
    classes, about 1/50 of the FPN.
    """

    def __init__(self, level_channels: list[int], num_classes: int) -> None:
        super().__init__()
        decoder_widths = level_channels[-2::-1]
        self.bottom_block = ResBlock3d(level_channels[-1], kernel_size=1)
        self.up_blocks = nn.ModuleList(nn.Conv3d(2 * c, c, kernel_size=1) for c in decoder_widths)
        self.skip_blocks = nn.ModuleList(nn.Conv3d(c, c, kernel_size=1) for c in decoder_widths)
        self.right_blocks = nn.ModuleList(ResBlock3d(c, kernel_size=1) for c in decoder_widths)
        self.final_block = nn.Conv3d(level_channels[0], num_classes, kernel_size=1)

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottom_block(pyramid[-1])
        for up, skip, right, feature in zip(self.up_blocks, self.skip_blocks, self.right_blocks,
                                            reversed(pyramid[:-1])):
            x = right(crop_to(_upsample2(up(x)), feature) + skip(feature))
        return self.final_block(x)
