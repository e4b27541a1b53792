"""Helpers the vox2vec trainers share."""
from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from vox2vec_nnunet.atomic import write_atomically
from vox2vec_nnunet.errors import Vox2VecError, exits_on_error

RUN_RECORD = "vox2vec_run.json"
"""``fold_X/vox2vec_run.json``: what a segmentation run trained, from what, how long and at which
learning rate; written by every segmentation trainer when its training starts, read by the
benchmark."""


NNUNET_ENTRY_POINTS = ("__init__", "initialize", "load_checkpoint", "run_training", "perform_actual_validation",
                       "build_network_architecture")
"""The trainer methods nnU-Net's commands call: ``nnUNetv2_train`` constructs the trainer, calls
``initialize`` before loading ``-pretrained_weights``, ``load_checkpoint`` for ``--c`` and
``--val``, then ``run_training`` (every other hook runs inside it) and
``perform_actual_validation``; ``nnUNetv2_predict`` calls ``build_network_architecture``."""


class ExitsOnVox2VecError:
    """Trainer mixin: a :class:`~vox2vec_nnunet.errors.Vox2VecError` raised inside nnU-Net's commands
    ends them with ``error: <message>`` alone (``SystemExit``, exit code 1), not with a traceback.

    Every subclass gets each of :data:`NNUNET_ENTRY_POINTS` it defines or inherits (from a mixin
    or from nnU-Net's trainer) wrapped with :func:`~vox2vec_nnunet.errors.exits_on_error`, so a
    variant that overrides one needs nothing more. Methods nnU-Net does not call directly
    (``_check_pretrained_weights``, ``get_dataloaders``, ...) keep raising ``Vox2VecError``.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in NNUNET_ENTRY_POINTS:  # only what is not wrapped yet: a variant's namespace stays its own
            method = inspect.getattr_static(cls, name)
            if isinstance(method, (classmethod, staticmethod)):  # nnU-Net's build_network_architecture is static
                if not getattr(method.__func__, "exits_on_error", False):
                    setattr(cls, name, type(method)(exits_on_error(method.__func__)))
            elif not getattr(method, "exits_on_error", False):
                setattr(cls, name, exits_on_error(method))


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
