"""Short-budget variants of the vox2vec trainers for the end-to-end tests (CPU, seconds).

nnU-Net finds them when this folder is listed in ``nnUNet_extTrainer`` after the installed one.
"""
import os
import signal

import torch

from vox2vec_nnunet.training.budgets import DEMO, PRETRAINING, Budget
from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer
from vox2vec_nnunet.training.segmentation import (Vox2VecTrainer, Vox2VecTrainer_FineTune,
                                                  Vox2VecTrainer_LinearProbe, Vox2VecTrainer_LinearProbe_RandomInit,
                                                  Vox2VecTrainer_LinearProbe_RandomInitBN)
from vox2vec_nnunet.training.unet_finetuning import nnUNetTrainer_Vox2VecFineTune, nnUNetTrainer_Vox2VecScratchWarmup
from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet

SHORT = Budget("Test", num_epochs=2, num_iterations_per_epoch=3, learning_rates=DEMO.learning_rates,
               num_val_iterations_per_epoch=2, test_time_mirroring=False)
"""Segmentation: two epochs of three iterations, two validation iterations, no test-time
mirroring; the demo budget's learning rates."""

SHORT_PRETRAINING = Budget("Test", num_epochs=3, num_iterations_per_epoch=4, learning_rates={PRETRAINING: 3e-4},
                           num_val_iterations_per_epoch=0)
"""Pre-training: three epochs of four iterations."""


class Vox2VecTrainer_Test(Vox2VecTrainer):
    budget = SHORT


class Vox2VecTrainer_LinearProbe_Test(Vox2VecTrainer_LinearProbe):
    budget = SHORT


class Vox2VecTrainer_LinearProbe_RandomInit_Test(Vox2VecTrainer_LinearProbe_RandomInit):
    budget = SHORT


class Vox2VecTrainer_LinearProbe_RandomInitBN_Test(Vox2VecTrainer_LinearProbe_RandomInitBN):
    budget = SHORT


class Vox2VecTrainer_FineTune_Test(Vox2VecTrainer_FineTune):
    budget = SHORT


class Vox2VecPretrainTrainer_Test(Vox2VecPretrainTrainer):
    """Three epochs of four iterations, 4 volumes x 64 positions, seed 0, checkpoint and
    snapshot every epoch."""

    budget = SHORT_PRETRAINING
    num_volumes = 4
    num_positions = 64
    seed = 0
    snapshot_every = 1

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1


class Vox2VecPretrainTrainer_UNet_Test(Vox2VecPretrainTrainer_UNet):
    """Two epochs of three iterations, 4 volumes x 64 positions, seed 0."""

    budget = Budget("Test", num_epochs=2, num_iterations_per_epoch=3, learning_rates={PRETRAINING: 3e-4},
                    num_val_iterations_per_epoch=0)
    num_volumes = 4
    num_positions = 64
    seed = 0


class nnUNetTrainer_Vox2VecFineTune_Test(nnUNetTrainer_Vox2VecFineTune):
    """One epoch of three iterations: all of it the first warm-up stage, with the encoder frozen."""

    budget = SHORT

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


class nnUNetTrainer_Vox2VecScratchWarmup_Test(nnUNetTrainer_Vox2VecScratchWarmup):
    """One epoch of three iterations, from random initialisation."""

    budget = SHORT

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


class Vox2VecPretrainTrainer_Float64Test(Vox2VecPretrainTrainer):
    """The pre-training in float64 (network, batches, loss), for comparing a run of several
    processes with one process: in float32 a few Adam steps amplify rounding differences of
    the reduction order to percents of the weights. Three epochs of two iterations, 4 volumes x
    32 positions, seed 0, a checkpoint every epoch, one thread. With ``VOX2VEC_TEST_KILL_AFTER_EPOCH=E`` in
    the environment every process SIGKILLs itself after epoch E's checkpoint, like a crash."""

    budget = Budget("Test", num_epochs=3, num_iterations_per_epoch=2, learning_rates={PRETRAINING: 3e-4},
                    num_val_iterations_per_epoch=0)

    num_volumes = 4
    num_positions = 32
    seed = 0

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        torch.set_num_threads(1)  # two processes on two cores: more threads spin against each other
        self.save_every = 1

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        return super().build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                  num_output_channels, enable_deep_supervision).double()

    def train_step(self, batch: dict) -> dict:
        return super().train_step(dict(batch, patches1=batch["patches1"].double(),
                                       patches2=batch["patches2"].double()))

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        if os.environ.get("VOX2VEC_TEST_KILL_AFTER_EPOCH") == str(self.current_epoch):
            if self.is_ddp:
                torch.distributed.barrier()  # rank 0 has written the checkpoint
            os.kill(os.getpid(), signal.SIGKILL)


class Vox2VecPretrainTrainer_Test_Seed0(Vox2VecPretrainTrainer_Test):
    """The demo's seeded pre-training at the test budget (``--trainer_variant Test``)."""

    seed = 0


class Vox2VecPretrainTrainer_Test_Seed1(Vox2VecPretrainTrainer_Test):
    seed = 1
