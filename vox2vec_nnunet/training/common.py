"""Helpers the vox2vec trainers share."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.errors import Vox2VecError

RUN_RECORD = "vox2vec_run.json"
"""``fold_X/vox2vec_run.json``: what a segmentation run trained, from what, how long and at which
learning rate; written by every segmentation trainer when its training starts, read by the
benchmark."""


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


def write_run_record(trainer, path: Path, backbone_source: str, pretrained_weights: str | None,
                     trainable_parameters: int) -> None:
    """Write ``trainer``'s run record (:data:`RUN_RECORD`) to ``path``."""
    record = {"trainer": type(trainer).__name__, "backbone_source": backbone_source,
              "pretrained_weights": pretrained_weights, "trainable_parameters": trainable_parameters,
              "total_parameters": count_parameters(trainer.network),
              "num_iterations": trainer.num_epochs * trainer.num_iterations_per_epoch,
              "batch_size": trainer.batch_size, "initial_lr": trainer.initial_lr,
              "learning_rate_source": trainer.learning_rate_source}
    write_atomically(str(path), lambda f: Path(f).write_text(json.dumps(record, indent=2)))


def check_resumed_learning_rate(trainer, previous: dict, path: Path) -> None:
    """Refuse to continue (``--c``) a run at another learning rate than the one it started with."""
    started = previous.get("initial_lr")
    if started is not None and started != trainer.initial_lr:
        raise Vox2VecError(
            f"{path}: this run started at learning rate {started:g} ({previous.get('learning_rate_source')}), "
            f"but would continue at {trainer.initial_lr:g} ({trainer.learning_rate_source}). Continue it with "
            f"VOX2VEC_LEARNING_RATE={started:g} in the environment (or without it, if it came from the budget).")
