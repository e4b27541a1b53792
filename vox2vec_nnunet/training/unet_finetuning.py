"""``nnUNetTrainer_Vox2VecFineTune``: nnU-Net's trainer with a warm-up for pre-trained U-Nets.

    nnUNetv2_train D 3d_fullres FOLD -p nnUNetResEncUNetMPlans -tr nnUNetTrainer_Vox2VecFineTune \\
        -pretrained_weights vox2vec_checkpoint.pth

The recipe (after the fine-tuning schedule for pre-trained nnU-Net CNNs of Wald et al., "Revisiting
MAE pre-training for 3D medical image segmentation", CVPR 2025, used in the nnssl / OpenMind
benchmark, Wald et al. 2025; nnU-Net 2.8 ships its whole-network part as
``nnUNetTrainer_warmup``: 50 of 1,000 epochs of linear warm-up, then the poly schedule from there):

1. the first 5% of the epochs (at least one) train the decoder and the segmentation layers with
   the encoder truly frozen (``requires_grad`` off: no gradient, no weight decay, no momentum),
   their learning rate rising linearly to ``initial_lr``; the decoder, pre-trained on other
   outputs, and the fresh segmentation layers adapt to the task before the encoder moves;
2. the next 5% train the whole network, the learning rate rising linearly again from
   ``initial_lr / warm-up epochs`` to ``initial_lr``, so the pre-trained encoder is not hit by
   the full learning rate while the loss is still large;
3. the rest is nnU-Net's poly schedule, ``initial_lr * (1 - t / T) ** 0.9`` over the remaining
   ``T`` epochs.

Everything else is ``nnUNetTrainer``'s: SGD with Nesterov momentum 0.99, ``initial_lr`` 1e-2 (the
budget :data:`~vox2vec_nnunet.training.budgets.NNUNET`; the short budgets set their own),
weight decay 3e-5, deep supervision, data augmentation, loss, validation. The learning rate is a
pure function of the epoch, so ``--c`` resumes on schedule. Without ``-pretrained_weights`` the
same schedule applies to a random network (a control, not a recommendation). Single process
only (one GPU or the CPU): DDP cannot follow parameters that stop and start needing gradients.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.optim.lr_scheduler import _LRScheduler

from vox2vec_nnunet.channels import channel_names
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.input_channels import prepare_pretrained_weights
from vox2vec_nnunet.training.budgets import NNUNET, Budget, BudgetedTrainer
from vox2vec_nnunet.training.common import (RUN_RECORD, ExitsOnVox2VecError, check_resumed_learning_rate,
                                            count_parameters, pretrained_weights_argument, state_checksum, unwrap,
                                            write_run_record)
from vox2vec_nnunet.weights import PRETRAINED_WEIGHTS_FILE, load_weights_file, network_weights

WARMUP_FRACTION = 0.05
"""Fraction of the epochs of each warm-up stage (Wald et al.: 50 of 1,000)."""


def warmup_epochs(num_epochs: int) -> int:
    """Epochs of each warm-up stage: 5% of the run, at least one."""
    return max(1, round(WARMUP_FRACTION * num_epochs))


def finetune_lr(epoch: int, num_epochs: int, initial_lr: float, exponent: float = 0.9) -> float:
    """The learning rate of ``epoch`` (0-based): decoder warm-up, whole-network warm-up, poly."""
    warmup = warmup_epochs(num_epochs)
    if epoch < 2 * warmup:
        return initial_lr * (epoch % warmup + 1) / warmup
    remaining = max(1, num_epochs - 2 * warmup)
    return initial_lr * max(0.0, 1 - (epoch - 2 * warmup) / remaining) ** exponent


def encoder_frozen(epoch: int, num_epochs: int) -> bool:
    """Whether the encoder is frozen in ``epoch``: during the first warm-up stage."""
    return epoch < warmup_epochs(num_epochs)


class FineTuneLRScheduler(_LRScheduler):
    """Sets :func:`finetune_lr` of the epoch nnU-Net passes to ``step`` (as its ``PolyLRScheduler``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, num_epochs: int) -> None:
        self.initial_lr = initial_lr
        self.num_epochs = num_epochs
        self.ctr = 0
        super().__init__(optimizer, -1)

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = finetune_lr(current_step, self.num_epochs, self.initial_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class _Vox2VecUNetTrainer(ExitsOnVox2VecError, BudgetedTrainer, nnUNetTrainer):
    """nnUNetTrainer at a :class:`~vox2vec_nnunet.training.budgets.Budget` (nnU-Net's own by
    default), writing ``fold_X/vox2vec_run.json`` as the vox2vec trainers do, for the benchmark.

    The network counts as pre-trained when its encoder changed between ``initialize`` and the
    start of training (where ``nnUNetv2_train -pretrained_weights`` loads); every parameter
    trains (the whole U-Net, nnU-Net style).
    """

    budget: ClassVar[Budget] = NNUNET

    def initialize(self) -> None:
        super().initialize()
        self._initial_encoder_checksum = state_checksum(unwrap(self.network).encoder)
        weights_file = pretrained_weights_argument()
        if weights_file is not None:  # checked, and the stem adapted to the channels, before nnU-Net loads it
            checkpoint = load_weights_file(weights_file, PRETRAINED_WEIGHTS_FILE)
            _, line = prepare_pretrained_weights(unwrap(self.network), checkpoint,
                                                 network_weights(checkpoint, weights_file, PRETRAINED_WEIGHTS_FILE),
                                                 weights_file,
                                                 channel_names(self.dataset_json, "dataset.json"))
            self.print_to_log_file(line)

    def on_train_start(self) -> None:
        super().on_train_start()
        record_file = Path(self.output_folder) / RUN_RECORD
        if record_file.is_file() and self.current_epoch > 0:  # --c: recorded when the run started
            check_resumed_learning_rate(self, json.loads(record_file.read_text()), record_file)
            return
        changed = not torch.equal(state_checksum(unwrap(self.network).encoder), self._initial_encoder_checksum)
        self.print_to_log_file(f"vox2vec: network from {'PRE-TRAINED weights' if changed else 'RANDOM INITIALISATION'}; "
                               f"{self.num_epochs * self.num_iterations_per_epoch:,} iterations, SGD lr "
                               f"{self.initial_lr:g} ({self.learning_rate_source})")
        if self.local_rank == 0:
            write_run_record(self, record_file, "pretrained" if changed else "random_init",
                             pretrained_weights_argument() if changed else None, count_parameters(self.network))


class nnUNetTrainer_Vox2VecFineTune(_Vox2VecUNetTrainer):
    """nnUNetTrainer with the two-stage warm-up for pre-trained weights; see the module docstring."""

    setup = "unet_finetune"

    def initialize(self) -> None:
        if self.is_ddp:
            raise Vox2VecError(f"{type(self).__name__} freezes the encoder for its first epochs, which DDP cannot "
                               f"follow; train on one GPU (without -num_gpus)")
        super().initialize()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                    momentum=0.99, nesterov=True)
        return optimizer, FineTuneLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def on_train_epoch_start(self) -> None:
        frozen = encoder_frozen(self.current_epoch, self.num_epochs)
        for parameter in unwrap(self.network).encoder.parameters():
            parameter.requires_grad_(not frozen)
        if self.current_epoch in (0, warmup_epochs(self.num_epochs)):
            self.print_to_log_file(
                f"vox2vec fine-tuning: epochs {self.current_epoch}-"
                f"{self.current_epoch + warmup_epochs(self.num_epochs) - 1}: "
                f"{'decoder and segmentation layers, encoder frozen' if frozen else 'whole network'}, "
                f"linear learning-rate warm-up to {self.initial_lr}")
        super().on_train_epoch_start()


class nnUNetTrainer_Vox2VecScratch(_Vox2VecUNetTrainer):
    """nnUNetTrainer as it is (from scratch: SGD 1e-2, poly schedule), writing the run record that
    the benchmark reads; the baseline of :class:`nnUNetTrainer_Vox2VecFineTune`."""

    setup = "unet_scratch"


class nnUNetTrainer_Vox2VecScratchWarmup(nnUNetTrainer_Vox2VecFineTune):
    """:class:`nnUNetTrainer_Vox2VecFineTune`'s schedule (encoder frozen, then warm-up, then poly)
    from random initialisation: the control that separates what the pre-trained weights bring from
    what the schedule brings. Refuses ``-pretrained_weights``."""

    setup = "unet_scratch_warmup"

    def initialize(self) -> None:
        if pretrained_weights_argument() is not None:
            raise Vox2VecError(f"{type(self).__name__} is the from-scratch control of the fine-tuning schedule; "
                               f"drop -pretrained_weights (or use nnUNetTrainer_Vox2VecFineTune)")
        super().initialize()
