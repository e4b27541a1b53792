"""Short-budget pre-training variants for CPU demos (the SPEC section 4 scale), one budget change each.

The scaled-down model itself (FPN width and depth, patch, spacing) lives in the plans, written
by ``vox2vec_nnunet_prepare_pretraining`` / ``vox2vec_nnunet_plan`` options; these classes change
only how long and with what batch the trainers run. ``*_DemoLong`` run four times longer. The
segmentation trainers' budget variants are generated in :mod:`.budget_variants`.
"""
from __future__ import annotations

import torch

from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer

DEVICE = torch.device("cuda")


class Vox2VecPretrainTrainer_Demo(Vox2VecPretrainTrainer):
    """500 iterations of 4 volumes x 256 positions (paper: 100,000 of 10 x 1,000), a snapshot
    every 100 iterations."""

    num_volumes = 4
    num_positions = 256
    snapshot_every = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 10
        self.num_iterations_per_epoch = 50
        self.save_every = 1


class Vox2VecPretrainTrainer_DemoLong(Vox2VecPretrainTrainer_Demo):
    """2,000 iterations of 4 volumes x 256 positions."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 40
