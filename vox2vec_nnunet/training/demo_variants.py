"""Short-budget probe variants for CPU demos (the SPEC section 4 scale), one budget change each.

The pre-training demo budgets are in :mod:`vox2vec_nnunet.training.pretraining_variants`.

The scaled-down model itself (FPN width and depth, patch, spacing) lives in the plans, written
by ``vox2vec_nnunet_prepare_pretraining`` / ``vox2vec_nnunet_plan`` options; these classes change
only how long and with what batch the trainers run. ``*_DemoLong`` run four times longer.
"""
from __future__ import annotations

import torch

from vox2vec_nnunet.training.common import NoTestTimeMirroring
from vox2vec_nnunet.training.segmentation import (Vox2VecTrainer_LinearProbe, Vox2VecTrainer_LinearProbe_RandomInit,
                                                  Vox2VecTrainer_LinearProbe_RandomInitBN)

DEVICE = torch.device("cuda")


class _DemoProbeBudget(NoTestTimeMirroring):
    """500 iterations at learning rate 3e-3 (a short, fixed probe budget; SPEC section 4),
    validated without test-time mirroring."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-3
        self.num_epochs = 5
        self.num_iterations_per_epoch = 100
        self.num_val_iterations_per_epoch = 5


class Vox2VecTrainer_LinearProbe_Demo(_DemoProbeBudget, Vox2VecTrainer_LinearProbe):
    """Linear probe of a pre-trained FPN, demo budget."""


class Vox2VecTrainer_LinearProbe_RandomInit_Demo(_DemoProbeBudget, Vox2VecTrainer_LinearProbe_RandomInit):
    """Linear probe of a randomly initialised FPN, demo budget."""


class Vox2VecTrainer_LinearProbe_RandomInitBN_Demo(_DemoProbeBudget, Vox2VecTrainer_LinearProbe_RandomInitBN):
    """Linear probe of a random FPN with re-estimated BatchNorm statistics, demo budget."""


class _DemoLongProbeBudget(_DemoProbeBudget):
    """2,000 iterations at learning rate 3e-3."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 20


class Vox2VecTrainer_LinearProbe_DemoLong(_DemoLongProbeBudget, Vox2VecTrainer_LinearProbe):
    """Linear probe of a pre-trained FPN, long demo budget."""


class Vox2VecTrainer_LinearProbe_RandomInit_DemoLong(_DemoLongProbeBudget, Vox2VecTrainer_LinearProbe_RandomInit):
    """Linear probe of a randomly initialised FPN, long demo budget."""


class Vox2VecTrainer_LinearProbe_RandomInitBN_DemoLong(_DemoLongProbeBudget, Vox2VecTrainer_LinearProbe_RandomInitBN):
    """Linear probe of a random FPN with re-estimated BatchNorm statistics, long demo budget."""
