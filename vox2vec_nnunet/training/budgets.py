"""Training budgets: one definition of each, for every trainer family.

A budget fixes how long every run of it trains (``num_epochs x num_iterations_per_epoch``), at
which learning rate each setup trains, and what the per-epoch pseudo-validation and the final
validation cost; the batch comes from the plans. Every trainer has a class attribute
``budget`` and a class attribute ``setup`` (the name of what it trains: a setup of
:data:`vox2vec_nnunet.training.setups.SETUPS`, or ``"pretraining"``), and
:class:`BudgetedTrainer` applies ``budget`` the nnU-Net way, in ``__init__``. A variant at
another budget is one small subclass that changes ``budget``, e.g. ``Vox2VecTrainer_FineTune_Demo``
(all of them in :mod:`vox2vec_nnunet.training.variants`).

Equal iterations of the same batch for every setup of one budget is what the paper's comparison
needs (Sect. 4.2); the learning rate is the one thing that differs by setup, because a frozen
probe and end-to-end training have different best learning rates at a short budget
(docs/results.md). ``VOX2VEC_LEARNING_RATE`` in the environment overrides the budget's learning
rate for one run: how ``vox2vec_nnunet_benchmark --select_lr`` trains each value of its grid.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.training.setups import SETUPS

LEARNING_RATE_VARIABLE = "VOX2VEC_LEARNING_RATE"
"""Environment variable that sets the learning rate of one run, whatever its budget says."""

PRETRAINING = "pretraining"
"""The ``setup`` of the pre-training trainers, their key in a budget's ``learning_rates``."""


@dataclass(frozen=True)
class Budget:
    """``num_epochs x num_iterations_per_epoch`` iterations, each setup at its learning rate
    (``learning_rates``, by setup name), ``num_val_iterations_per_epoch`` batches of nnU-Net's
    per-epoch pseudo-validation, and ``test_time_mirroring`` for the final validation (off: 8x
    fewer forward passes). ``name`` is the variants' suffix (empty for the base trainers)."""

    name: str
    num_epochs: int
    num_iterations_per_epoch: int
    learning_rates: Mapping[str, float]
    num_val_iterations_per_epoch: int = 50
    test_time_mirroring: bool = True

    @property
    def total_iterations(self) -> int:
        return self.num_epochs * self.num_iterations_per_epoch

    def learning_rate(self, setup: str) -> float:
        if setup not in self.learning_rates:
            raise Vox2VecError(f"the {self.name or 'base'} budget gives no learning rate for {setup!r} "
                               f"(it has {', '.join(self.learning_rates)})")
        return self.learning_rates[setup]

    def describe(self) -> str:
        mirroring = "with" if self.test_time_mirroring else "without"
        return (f"{self.total_iterations:,} iterations ({self.num_epochs} x {self.num_iterations_per_epoch}), "
                f"validated {mirroring} test-time mirroring")


def _every(setups: tuple[str, ...], lr: float) -> dict[str, float]:
    return dict.fromkeys(setups, lr)


_FPN_SETUPS = tuple(name for name, setup in SETUPS.items() if not setup.own_unet)
_UNET_SETUPS = tuple(name for name, setup in SETUPS.items() if setup.own_unet)

PAPER = Budget("", num_epochs=180, num_iterations_per_epoch=250, learning_rates=_every(_FPN_SETUPS, 3e-4))
"""The FPN setups at the paper's budget (Sect. 4.2): 45,000 iterations of Adam 3e-4."""

NNUNET = Budget("", num_epochs=1000, num_iterations_per_epoch=250, learning_rates=_every(_UNET_SETUPS, 1e-2))
"""nnU-Net's own U-Nets at nnU-Net's own budget: 250,000 iterations of SGD 1e-2 (nnUNetTrainer's)."""

_DEMO_LEARNING_RATES = {
    # Adam, FPN setups: the per-fold choices of vox2vec_nnunet_benchmark --select_lr (grid 3e-4,
    # 3e-3) on both phantom generators, 3 folds each: from scratch 3e-4 (6 of 6 folds); the probes
    # and the random-FPN baselines, heads on a frozen backbone, 3e-3 (the non-linear probe 5 of 6,
    # the others 6 of 6); fine-tuning's head 3e-3 on the demo phantoms (2 of 3), 3e-4 on the
    # clinical ones (2 of 3), kept at 3e-3, the better mean inner Dice over the six (52.3 vs 48.8).
    # Fine-tuning's backbone keeps the paper's 3e-5 -> 3e-4 whatever the head's rate
    # (Vox2VecTrainer_FineTune). docs/results.md, "Table 1 at demo scale, each setup at its
    # selected learning rate", has the runs and their commands.
    "scratch": 3e-4, "linear_probe": 3e-3, "nonlinear_probe": 3e-3, "finetune": 3e-3,
    "linear_probe_random": 3e-3, "nonlinear_probe_random": 3e-3,
    "linear_probe_random_bn": 3e-3, "nonlinear_probe_random_bn": 3e-3,
    # SGD (Nesterov 0.99), nnU-Net's U-Nets: nnUNetTrainer's 1e-2, the choice of --select_lr
    # --unet_lr_grid 3e-3 1e-2 in 14 of 18 per-fold choices over both generators (docs/results.md).
    "unet_scratch": 1e-2, "unet_scratch_warmup": 1e-2, "unet_finetune": 1e-2,
}

DEMO = Budget("Demo", num_epochs=5, num_iterations_per_epoch=100, learning_rates=_DEMO_LEARNING_RATES,
              num_val_iterations_per_epoch=5, test_time_mirroring=False)
"""A short, fixed CPU budget for every segmentation setup of both arms: 500 iterations
(docs/method.md, "What a small CPU run can show")."""

DEMO_LONG = Budget("DemoLong", num_epochs=20, num_iterations_per_epoch=100, learning_rates=_DEMO_LEARNING_RATES,
                   num_val_iterations_per_epoch=5, test_time_mirroring=False)
"""Four times the demo budget: 2,000 iterations, the same learning rates."""

SEGMENTATION_BUDGETS: dict[str, Budget] = {b.name: b for b in (DEMO, DEMO_LONG)}
"""The short budgets every segmentation setup has a variant of (``--trainer_variant NAME``)."""

PRETRAINING_PAPER = Budget("", num_epochs=400, num_iterations_per_epoch=250, learning_rates={PRETRAINING: 3e-4},
                           num_val_iterations_per_epoch=0)
"""Pre-training at the paper's budget (Sect. 4.1): 100,000 iterations of Adam 3e-4."""

PRETRAINING_DEMO = Budget("Demo", num_epochs=6, num_iterations_per_epoch=50, learning_rates={PRETRAINING: 3e-4},
                          num_val_iterations_per_epoch=0)
"""300 iterations, for the demo's time (the linear probe's gain from 300 to 500 iterations was
inside the spread between folds: docs/results.md, "How long to pre-train")."""

PRETRAINING_DEMO_LONG = Budget("DemoLong", num_epochs=40, num_iterations_per_epoch=50,
                               learning_rates={PRETRAINING: 3e-4}, num_val_iterations_per_epoch=0)
"""2,000 iterations."""


def learning_rate_override() -> float | None:
    """The learning rate ``VOX2VEC_LEARNING_RATE`` sets, if it is set."""
    value = os.environ.get(LEARNING_RATE_VARIABLE)
    if value is None or value == "":
        return None
    try:
        lr = float(value)
    except ValueError:
        lr = float("nan")
    if not 0 < lr < float("inf"):
        raise Vox2VecError(f"{LEARNING_RATE_VARIABLE}={value!r} is not a positive learning rate "
                           f"(e.g. {LEARNING_RATE_VARIABLE}=3e-4)")
    return lr


class BudgetedTrainer:
    """Trainer mixin (before nnU-Net's trainer in the bases): ``budget`` applied in ``__init__``.

    Sets ``num_epochs``, ``num_iterations_per_epoch``, ``num_val_iterations_per_epoch`` and
    ``initial_lr`` (the budget's rate for ``setup``, or ``VOX2VEC_LEARNING_RATE``;
    ``learning_rate_source`` says which), and drops test-time mirroring from the final
    validation where the budget says so (training keeps nnU-Net's mirroring augmentation). A
    variant may still change any of them after ``__init__``, the nnU-Net way.
    """

    budget: ClassVar[Budget]
    setup: ClassVar[str]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")) -> None:
        # nnU-Net records the constructor's arguments by the names of this signature
        super().__init__(plans, configuration, fold, dataset_json, device)
        budget = self.budget
        self.num_epochs = budget.num_epochs
        self.num_iterations_per_epoch = budget.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = budget.num_val_iterations_per_epoch
        override = learning_rate_override()
        if override is None:
            self.initial_lr = budget.learning_rate(self.setup)
            self.learning_rate_source = f"budget {budget.name or 'base'}"
        else:
            self.initial_lr = override
            self.learning_rate_source = LEARNING_RATE_VARIABLE

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configuration = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.budget.test_time_mirroring:
            self.inference_allowed_mirroring_axes = None
        return configuration
