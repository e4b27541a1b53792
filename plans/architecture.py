"""The architecture swap: the plans entry that makes nnU-Net build the vox2vec FPN.

nnU-Net builds ``configurations[cfg]["architecture"]["network_class_name"]`` (located with
``pydoc.locate``) with ``arch_kwargs`` (nnU-Net's ``get_network_from_plans``).
"""
from __future__ import annotations

from vox2vec_nnunet.network.segmentation import HeadName, Vox2VecSegmentationNetwork, fpn_strides

NETWORK_CLASS_NAME = f"{Vox2VecSegmentationNetwork.__module__}.{Vox2VecSegmentationNetwork.__qualname__}"


def fpn_architecture(head: HeadName = "nonlinear", base_channels: int = 16, num_levels: int = 6) -> dict:
    """The ``architecture`` entry of a vox2vec configuration (paper Sect. 3.2 and 3.4)."""
    return {
        "network_class_name": NETWORK_CLASS_NAME,
        "arch_kwargs": {
            "head": head,
            "base_channels": base_channels,
            "num_levels": num_levels,
            "strides": fpn_strides(num_levels),
        },
        "_kw_requires_import": [],
    }
