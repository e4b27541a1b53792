"""vox2vec pre-training of nnU-Net's own U-Nets (paper Sect. 3.2-3.3 with another backbone).

nnU-Net's networks (``PlainConvUNet`` and ``ResidualEncoderUNet`` of
dynamic-network-architectures, e.g. the residual-encoder presets ``nnUNetResEncUNet{M,L,XL}Plans``)
are U-Nets: an encoder of stages at decreasing resolution, and a decoder whose stage ``s``
upsamples the map below it (transposed convolution), concatenates the encoder's skip at that
resolution and convolves. :class:`Vox2VecUNet` trains such a network, built by nnU-Net from a
plans configuration, with the vox2vec objective.

Which features are read out, and why. The paper's voxel representation is the concatenation of
every level of its FPN's decoder at the voxel, full resolution first, plus the bottom of the
pyramid (Sect. 3.2): fine levels carry local detail, coarse levels context. The U-Net has the
same pyramid: the output of each decoder stage (one map per resolution above the bottleneck,
the last one at full resolution, which nnU-Net's 1x1x1 segmentation layer reads) and the
bottleneck (the encoder's last stage), which is the FPN's bottom block. So a voxel's
representation is the concatenation of the decoder stage outputs, full resolution first, and of
the bottleneck, each read at the voxel's cell: the integer floor of its coordinate divided by
that map's cumulative stride per axis (nearest cell, no interpolation, as for the FPN levels).
For the tiny ResEnc plans of the tests (features 32, 64, 128; strides (1,1,1), (2,2,2),
(1,2,2)) that is 32 + 64 + 128 = 224 dimensions; for a typical ``nnUNetResEncUNetMPlans``
3d_fullres of CT (6 stages of 32, 64, 128, 256, 320, 320) 1,120, close to the paper's 1,008. The encoder's skips are
not read: every one of them feeds a decoder stage, so the decoder's outputs already depend on
them, and all decoder stages are what fine-tuning uses. Reading every decoder stage, not only the
last, makes each resolution's features discriminative, as in the paper; the outputs are taken by
forward hooks on ``decoder.stages``, so nnU-Net's own ``forward`` runs unchanged.

What differs from the paper. The backbone is nnU-Net's network for the plans rather than the
paper's FPN: convolutions with instance normalisation and leaky ReLU, skips concatenated rather
than added, as many stages and channels (capped at 320) as the planner chose, and pooling that
can be anisotropic (a stride of 1 along the slice axis at some stages), so a map's cell spans
its own stride per axis rather than 2^i voxels; the representation has the sum of the stages'
channels, not 1,008, and the projector's hidden width follows it. Projector, InfoNCE, sampling
and augmentation are the paper's. After pre-training the projector is discarded; encoder and
decoder are kept whole (only nnU-Net's 1x1x1 segmentation layers, ``decoder.seg_layers``, are
not pre-trained), so fine-tuning starts the whole U-Net from pre-trained weights, where the
paper's fine-tuning adds a randomly initialised head to the FPN.

Parameter names are the U-Net's own (``encoder.``, ``decoder.``), so the checkpoint loads with
``nnUNetv2_train -pretrained_weights`` into the same plans configuration; ``projector.`` is
ignored there.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from vox2vec_nnunet.network.projector import Projector


def strided_voxel_representations(maps: Sequence[torch.Tensor], strides: Sequence[Sequence[int]],
                                  positions: torch.Tensor) -> torch.Tensor:
    """Read out chosen voxels' representations from maps of per-axis cumulative ``strides``.

    A voxel at ``(z, y, x)`` (full resolution) is read from map ``i`` at its cell
    ``(z // strides[i][0], y // strides[i][1], x // strides[i][2])``, nearest cell without
    interpolation (paper Sect. 3.2, for anisotropic pooling); the maps' vectors are
    concatenated in the order of ``maps``.

    Args:
        maps: ``(B, C_i, Z_i, Y_i, X_i)`` feature maps.
        strides: per map, its cumulative stride along (z, y, x).
        positions: ``(N, 4)`` integer tensor of ``[batch index, z, y, x]`` at full resolution.

    Returns:
        ``(N, sum of C_i)`` tensor.
    """
    if positions.ndim != 2 or positions.shape[1] != 4:
        raise ValueError(f"positions must have shape (N, 4), got {tuple(positions.shape)}")
    if len(maps) != len(strides):
        raise ValueError(f"got {len(maps)} maps but {len(strides)} strides")
    positions = positions.to(device=maps[0].device, dtype=torch.long)
    batch, coords = positions[:, 0], positions[:, 1:]
    features = []
    for fmap, stride in zip(maps, strides):
        z, y, x = (coords // torch.as_tensor(list(stride), device=coords.device)).unbind(1)
        features.append(fmap[batch, :, z, y, x])
    return torch.cat(features, dim=1)


class Vox2VecUNet(nn.Module):
    """An nnU-Net U-Net (encoder + decoder) with the vox2vec projector; see the module docstring.

    Args:
        unet: the network nnU-Net builds for a plans configuration
            (``nnUNetTrainer.build_network_architecture``): a ``PlainConvUNet`` or
            ``ResidualEncoderUNet``, or any network with an ``encoder`` returning its stage
            outputs (with ``strides`` and ``output_channels``) and a ``decoder`` with ``stages``
            that it calls as ``decoder(skips)``.
        projection_dim: output dimension of the projector (paper: 128).
        backbone_autocast: run encoder and decoder under bfloat16 autocast (projector float32).
    """

    def __init__(self, unet: nn.Module, projection_dim: int = 128, backbone_autocast: bool = False) -> None:
        super().__init__()
        encoder, decoder = getattr(unet, "encoder", None), getattr(unet, "decoder", None)
        if encoder is None or not hasattr(encoder, "strides") or not hasattr(encoder, "output_channels") or \
                not isinstance(getattr(decoder, "stages", None), nn.ModuleList):
            raise ValueError(f"{type(unet).__name__} is not a U-Net of dynamic-network-architectures (an encoder "
                             f"with strides and output_channels, a decoder with stages); vox2vec pre-trains "
                             f"PlainConvUNet and ResidualEncoderUNet")
        stages = len(encoder.output_channels)
        if len(decoder.stages) != stages - 1 or len(np.asarray(encoder.strides[0]).reshape(-1)) != 3:
            raise ValueError(f"expected a 3-D U-Net with {stages - 1} decoder stages for {stages} encoder stages, "
                             f"got {len(decoder.stages)} decoder stages and strides {encoder.strides}")
        self.encoder = encoder
        self.decoder = decoder
        self.decoder.deep_supervision = False
        cumulative = np.cumprod(np.asarray(encoder.strides, dtype=int).reshape(stages, 3), axis=0)
        # level k < stages - 1 is decoder stage (stages - 2 - k), at the resolution and width of encoder
        # stage k; the last level is the bottleneck (encoder stage stages - 1)
        self.level_strides: list[tuple[int, int, int]] = [tuple(int(v) for v in s) for s in cumulative]
        self.level_channels: list[int] = [int(c) for c in encoder.output_channels]
        self.projector = Projector(self.representation_dim, projection_dim)
        self.backbone_autocast = backbone_autocast
        self._decoder_outputs: list[torch.Tensor] = []
        for stage in self.decoder.stages:
            stage.register_forward_hook(self._keep_decoder_output)

    @property
    def representation_dim(self) -> int:
        """Dimension of a voxel's representation: the channels of all levels."""
        return sum(self.level_channels)

    def _keep_decoder_output(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._decoder_outputs.append(output)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The decoder stage outputs, full resolution first, then the bottleneck."""
        self._decoder_outputs = []
        skips = self.encoder(x)
        self.decoder(skips)  # its segmentation output is not used; the hooks keep the stage outputs
        maps, self._decoder_outputs = self._decoder_outputs[::-1] + [skips[-1]], []
        return maps

    def forward(self, patches: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``patches`` (B, C, z, y, x), ``positions`` (N, 4) rows [patch, z, y, x] -> (N, d) on the unit sphere."""
        with torch.autocast(patches.device.type, dtype=torch.bfloat16, enabled=self.backbone_autocast):
            maps = self.feature_maps(patches)
        return self.projector(strided_voxel_representations(maps, self.level_strides, positions).float())
