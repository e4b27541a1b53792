"""Helpers the vox2vec trainers share."""
from __future__ import annotations

import sys

import torch
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel


def unwrap(network: nn.Module) -> nn.Module:
    """The plain module behind DDP and ``torch.compile`` wrappers."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def pretrained_weights_argument() -> str | None:
    """The ``-pretrained_weights`` file given to ``nnUNetv2_train``, if any.

    nnU-Net loads it after ``initialize()`` with ``torch.load(weights_only=False)`` and no
    ``map_location``; reading the argument lets our trainers check the file safely first.
    """
    argv = sys.argv
    if "-pretrained_weights" in argv:
        i = argv.index("-pretrained_weights")
        if i + 1 < len(argv):
            return argv[i + 1]
    return None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def state_checksum(module: nn.Module) -> torch.Tensor:
    """A cheap fingerprint of a module's weights, to tell whether they were replaced."""
    return torch.stack([t.detach().double().sum().cpu() for t in module.state_dict().values()
                        if t.is_floating_point()])


class NoTestTimeMirroring:
    """Trainer mixin: validation predicts without test-time mirroring (8x fewer forward passes).

    Training keeps nnU-Net's mirroring augmentation; for short CPU runs.
    """

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configuration = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return configuration
