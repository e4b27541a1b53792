"""Every trainer variant at a short budget, and the seeded pre-training runs, written out.

Each variant is a small subclass that changes one thing, the nnU-Net way, named for the change:
``NAME_Demo`` / ``NAME_DemoLong`` is ``NAME`` at the budget
:data:`~vox2vec_nnunet.training.budgets.DEMO` / ``DEMO_LONG`` (segmentation: 500 / 2,000
iterations, every setup of both arms at the same iterations of the same batch, each at its own
learning rate) or ``PRETRAINING_DEMO`` / ``PRETRAINING_DEMO_LONG`` (pre-training: 300 / 2,000
iterations of 4 volumes x 256 positions); ``NAME_Seed{S}`` is ``NAME`` with ``seed = S``. The
folder ``nnUNet_extTrainer`` points at re-exports them (``trainers/vox2vec_variant_trainers.py``),
so ``nnUNetv2_train -tr NAME`` and ``nnUNetv2_predict -tr NAME`` find them.

A run with another seed, or another budget, is a subclass of the same shape in a module of your
own ``nnUNet_extTrainer`` folder, e.g.::

    class Vox2VecPretrainTrainer_Seed7(Vox2VecPretrainTrainer):
        seed = 7
"""
from __future__ import annotations

import re

import torch

from vox2vec_nnunet.training.budgets import DEMO, DEMO_LONG, PRETRAINING_DEMO, PRETRAINING_DEMO_LONG
from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer
from vox2vec_nnunet.training.segmentation import (Vox2VecTrainer, Vox2VecTrainer_FineTune, Vox2VecTrainer_LinearProbe,
                                                  Vox2VecTrainer_LinearProbe_RandomInit,
                                                  Vox2VecTrainer_LinearProbe_RandomInitBN, Vox2VecTrainer_NonLinearProbe,
                                                  Vox2VecTrainer_NonLinearProbe_RandomInit,
                                                  Vox2VecTrainer_NonLinearProbe_RandomInitBN)
from vox2vec_nnunet.training.unet_finetuning import (nnUNetTrainer_Vox2VecFineTune, nnUNetTrainer_Vox2VecScratch,
                                                     nnUNetTrainer_Vox2VecScratchWarmup)
from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet

DEVICE = torch.device("cuda")


# The FPN setups (paper Sect. 4.2) at the short budgets.
class Vox2VecTrainer_Demo(Vox2VecTrainer):
    budget = DEMO


class Vox2VecTrainer_LinearProbe_Demo(Vox2VecTrainer_LinearProbe):
    budget = DEMO


class Vox2VecTrainer_NonLinearProbe_Demo(Vox2VecTrainer_NonLinearProbe):
    budget = DEMO


class Vox2VecTrainer_FineTune_Demo(Vox2VecTrainer_FineTune):
    budget = DEMO


class Vox2VecTrainer_LinearProbe_RandomInit_Demo(Vox2VecTrainer_LinearProbe_RandomInit):
    budget = DEMO


class Vox2VecTrainer_NonLinearProbe_RandomInit_Demo(Vox2VecTrainer_NonLinearProbe_RandomInit):
    budget = DEMO


class Vox2VecTrainer_LinearProbe_RandomInitBN_Demo(Vox2VecTrainer_LinearProbe_RandomInitBN):
    budget = DEMO


class Vox2VecTrainer_NonLinearProbe_RandomInitBN_Demo(Vox2VecTrainer_NonLinearProbe_RandomInitBN):
    budget = DEMO


class Vox2VecTrainer_DemoLong(Vox2VecTrainer):
    budget = DEMO_LONG


class Vox2VecTrainer_LinearProbe_DemoLong(Vox2VecTrainer_LinearProbe):
    budget = DEMO_LONG


class Vox2VecTrainer_NonLinearProbe_DemoLong(Vox2VecTrainer_NonLinearProbe):
    budget = DEMO_LONG


class Vox2VecTrainer_FineTune_DemoLong(Vox2VecTrainer_FineTune):
    budget = DEMO_LONG


class Vox2VecTrainer_LinearProbe_RandomInit_DemoLong(Vox2VecTrainer_LinearProbe_RandomInit):
    budget = DEMO_LONG


class Vox2VecTrainer_NonLinearProbe_RandomInit_DemoLong(Vox2VecTrainer_NonLinearProbe_RandomInit):
    budget = DEMO_LONG


class Vox2VecTrainer_LinearProbe_RandomInitBN_DemoLong(Vox2VecTrainer_LinearProbe_RandomInitBN):
    budget = DEMO_LONG


class Vox2VecTrainer_NonLinearProbe_RandomInitBN_DemoLong(Vox2VecTrainer_NonLinearProbe_RandomInitBN):
    budget = DEMO_LONG


# nnU-Net's own U-Net setups at the same short budgets (SGD, each setup at its own learning rate).
class nnUNetTrainer_Vox2VecScratch_Demo(nnUNetTrainer_Vox2VecScratch):
    budget = DEMO


class nnUNetTrainer_Vox2VecScratchWarmup_Demo(nnUNetTrainer_Vox2VecScratchWarmup):
    budget = DEMO


class nnUNetTrainer_Vox2VecFineTune_Demo(nnUNetTrainer_Vox2VecFineTune):
    budget = DEMO


class nnUNetTrainer_Vox2VecScratch_DemoLong(nnUNetTrainer_Vox2VecScratch):
    budget = DEMO_LONG


class nnUNetTrainer_Vox2VecScratchWarmup_DemoLong(nnUNetTrainer_Vox2VecScratchWarmup):
    budget = DEMO_LONG


class nnUNetTrainer_Vox2VecFineTune_DemoLong(nnUNetTrainer_Vox2VecFineTune):
    budget = DEMO_LONG


# Pre-training at the short budgets: the FPN and nnU-Net's U-Net.
class Vox2VecPretrainTrainer_Demo(Vox2VecPretrainTrainer):
    """300 iterations of 4 volumes x 256 positions (paper: 100,000 of 10 x 1,000), a checkpoint
    every 50 iterations and a snapshot every 100."""

    budget = PRETRAINING_DEMO
    num_volumes = 4
    num_positions = 256
    snapshot_every = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1


class Vox2VecPretrainTrainer_DemoLong(Vox2VecPretrainTrainer_Demo):
    """2,000 iterations of 4 volumes x 256 positions."""

    budget = PRETRAINING_DEMO_LONG


class Vox2VecPretrainTrainer_UNet_Demo(Vox2VecPretrainTrainer_UNet, Vox2VecPretrainTrainer_Demo):
    """nnU-Net's U-Net at the FPN's demo pre-training."""


class Vox2VecPretrainTrainer_UNet_DemoLong(Vox2VecPretrainTrainer_UNet, Vox2VecPretrainTrainer_DemoLong):
    """nnU-Net's U-Net at the FPN's long demo pre-training."""


# Seeded pre-training runs (the demo's --pretrain_seeds).
class Vox2VecPretrainTrainer_Demo_Seed0(Vox2VecPretrainTrainer_Demo):
    seed = 0


class Vox2VecPretrainTrainer_Demo_Seed1(Vox2VecPretrainTrainer_Demo):
    seed = 1


class Vox2VecPretrainTrainer_Demo_Seed2(Vox2VecPretrainTrainer_Demo):
    seed = 2


class Vox2VecPretrainTrainer_DemoLong_Seed0(Vox2VecPretrainTrainer_DemoLong):
    seed = 0


class Vox2VecPretrainTrainer_DemoLong_Seed1(Vox2VecPretrainTrainer_DemoLong):
    seed = 1


class Vox2VecPretrainTrainer_DemoLong_Seed2(Vox2VecPretrainTrainer_DemoLong):
    seed = 2


SEEDS = (0, 1, 2)
"""The seeds of the ``_Seed{S}`` variants of ``Vox2VecPretrainTrainer_Demo`` and ``_DemoLong``."""

_SEEDED_NAME = re.compile(r"(?P<base>\w+)_Seed(?P<seed>0|[1-9][0-9]*)")


def seeded_name(base: str, seed: int) -> str:
    """The trainer name of ``base`` with ``seed``: ``Vox2VecPretrainTrainer_Demo_Seed0``."""
    return f"{base}_Seed{seed}"


def unseeded_name(name: str) -> str:
    """``name`` without its ``_Seed{S}`` ending: the pre-training run that seeds repeat."""
    match = _SEEDED_NAME.fullmatch(name)
    return name if match is None else match["base"]


__all__ = [name for name, value in list(globals().items()) if isinstance(value, type) and value.__module__ == __name__]
