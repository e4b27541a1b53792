"""The vox2vec pre-training model: FPN backbone + projector (paper Sect. 3.2-3.3, Fig. 1).

The contrastive loss is a separate pure function (:func:`vox2vec_nnunet.loss.info_nce`).
"""
from __future__ import annotations

import torch
from torch import nn

from vox2vec_nnunet.network.fpn import FPN3d, voxel_representations
from vox2vec_nnunet.network.projector import Projector


class Vox2Vec(nn.Module):
    """Maps patches and voxel positions to L2-normalised 128-d embeddings.

    With ``backbone_autocast`` the backbone runs under bfloat16 autocast on the patches'
    device (CUDA, or the CPU), for memory and speed; the representations are cast back to
    the patches' dtype (float32) before the projector, so the projector and the loss are float32. The reference
    trains in float32 (the default). The pre-training trainer switches it on for CUDA, as
    nnU-Net's trainers switch deep supervision on their networks.
    Parameter names start with ``backbone.``, like the segmentation network's, so a
    pre-training checkpoint loads into it with ``nnUNetv2_train -pretrained_weights``.
    """

    def __init__(self, input_channels: int = 1, base_channels: int = 16, num_levels: int = 6,
                 projection_dim: int = 128, backbone_autocast: bool = False) -> None:
        super().__init__()
        self.backbone = FPN3d(input_channels, base_channels, num_levels)
        self.projector = Projector(self.backbone.representation_dim, projection_dim)
        self.backbone_autocast = backbone_autocast

    def forward(self, patches: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``patches`` (B, C, z, y, x), ``positions`` (N, 4) rows [patch, z, y, x] -> (N, d)."""
        with torch.autocast(patches.device.type, dtype=torch.bfloat16, enabled=self.backbone_autocast):
            pyramid = self.backbone(patches)
        return self.projector(voxel_representations(pyramid, positions).to(patches.dtype))
