"""Short-budget variants of the vox2vec trainers for the end-to-end tests (CPU, seconds).

nnU-Net finds them when this folder is listed in ``nnUNet_extTrainer`` after the installed one.
"""
import torch

from vox2vec_nnunet.training.common import NoTestTimeMirroring
from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer
from vox2vec_nnunet.training.pretraining_variants import seeded_lookup
from vox2vec_nnunet.training.segmentation import (Vox2VecTrainer, Vox2VecTrainer_FineTune,
                                                  Vox2VecTrainer_LinearProbe, Vox2VecTrainer_LinearProbe_RandomInit,
                                                  Vox2VecTrainer_LinearProbe_RandomInitBN)
from vox2vec_nnunet.training.unet_finetuning import nnUNetTrainer_Vox2VecFineTune
from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet


class _Short(NoTestTimeMirroring):
    """Two epochs of three iterations, two validation iterations, no test-time mirroring."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 2


class Vox2VecTrainer_Test(_Short, Vox2VecTrainer):
    pass


class Vox2VecTrainer_LinearProbe_Test(_Short, Vox2VecTrainer_LinearProbe):
    pass


class Vox2VecTrainer_LinearProbe_RandomInit_Test(_Short, Vox2VecTrainer_LinearProbe_RandomInit):
    pass


class Vox2VecTrainer_LinearProbe_RandomInitBN_Test(_Short, Vox2VecTrainer_LinearProbe_RandomInitBN):
    pass


class Vox2VecTrainer_FineTune_Test(_Short, Vox2VecTrainer_FineTune):
    pass


class Vox2VecPretrainTrainer_Test(_Short, Vox2VecPretrainTrainer):
    """Three epochs of four iterations, 4 volumes x 64 positions, seed 0, checkpoint and
    snapshot every epoch."""

    num_volumes = 4
    num_positions = 64
    seed = 0
    snapshot_every = 1

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 3
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 0
        self.save_every = 1


class Vox2VecPretrainTrainer_UNet_Test(_Short, Vox2VecPretrainTrainer_UNet):
    """Two epochs of three iterations, 4 volumes x 64 positions, seed 0."""

    num_volumes = 4
    num_positions = 64
    seed = 0

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_val_iterations_per_epoch = 0


class nnUNetTrainer_Vox2VecFineTune_Test(_Short, nnUNetTrainer_Vox2VecFineTune):
    """One epoch of three iterations: all of it the first warm-up stage, with the encoder frozen."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


__getattr__ = seeded_lookup(__name__, Vox2VecPretrainTrainer_Test)  # Vox2VecPretrainTrainer_Test_Seed{S}
