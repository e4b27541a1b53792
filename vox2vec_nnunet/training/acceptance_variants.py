"""Short runs of the trainers for the GPU acceptance run (``python -m vox2vec_nnunet.perf.gpu_acceptance``).

Each variant changes only how long a trainer runs (and, for pre-training, n, m, the seed and
the checkpoint interval), the nnU-Net way; network, data, loss, optimiser and schedules are the
base trainers'. ``*_Acceptance`` is the GPU size: the FPN pre-training at the paper's n = 10
volumes x m = 1,000 positions (Sect. 4.1) for 300 iterations, a checkpoint every 50, so that a
run killed after its first checkpoint has most of its iterations left to resume.
``*_AcceptanceSmoke`` is the CPU size the test suite runs (``--cpu_smoke``).

The fine-tuning variants skip nnU-Net's final validation (the prediction of every validation
case at the end of training): the acceptance run predicts a clinical-size scan with
``nnUNetv2_predict`` instead, the same inference on one scan, and the per-epoch pseudo-validation
still runs.
"""
from __future__ import annotations

import torch

from vox2vec_nnunet.training.budgets import NNUNET, PAPER, PRETRAINING_PAPER, Budget
from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer
from vox2vec_nnunet.training.segmentation import Vox2VecTrainer_FineTune
from vox2vec_nnunet.training.unet_finetuning import nnUNetTrainer_Vox2VecFineTune
from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet

DEVICE = torch.device("cuda")


def _short(epochs: int, iterations_per_epoch: int, validation_iterations: int = 0) -> Budget:
    return Budget("Acceptance", num_epochs=epochs, num_iterations_per_epoch=iterations_per_epoch,
                  learning_rates={**PAPER.learning_rates, **NNUNET.learning_rates, **PRETRAINING_PAPER.learning_rates},
                  num_val_iterations_per_epoch=validation_iterations, test_time_mirroring=False)


class _PredictInsteadOfValidation:
    """Fine-tuning mixin: no final validation (``nnUNetv2_predict`` of a scan follows the run)."""

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("no final validation in this short run (vox2vec_nnunet.training.acceptance_variants)")


class _ShortPretraining:
    """Pre-training mixin: seed 0 and a checkpoint (``checkpoint_latest.pth``) after every epoch."""

    seed = 0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.save_every = 1


class Vox2VecPretrainTrainer_Acceptance(_ShortPretraining, Vox2VecPretrainTrainer):
    """300 iterations (6 epochs x 50) of the paper's n = 10 volumes x m = 1,000 positions."""

    num_volumes = 10
    num_positions = 1000
    budget = _short(6, 50)


class Vox2VecPretrainTrainer_AcceptanceSmoke(_ShortPretraining, Vox2VecPretrainTrainer):
    """12 iterations (4 epochs x 3) of 2 volumes x 64 positions."""

    num_volumes = 2
    num_positions = 64
    budget = _short(4, 3)


class Vox2VecTrainer_FineTune_Acceptance(_PredictInsteadOfValidation, Vox2VecTrainer_FineTune):
    """100 iterations (2 epochs x 50), 5 pseudo-validation batches per epoch; the backbone
    frozen for the first third, as in the paper's schedule."""

    budget = _short(2, 50, 5)


class Vox2VecTrainer_FineTune_AcceptanceSmoke(_PredictInsteadOfValidation, Vox2VecTrainer_FineTune):
    """6 iterations (2 epochs x 3), one pseudo-validation batch per epoch."""

    budget = _short(2, 3, 1)


class Vox2VecPretrainTrainer_UNet_Acceptance(_ShortPretraining, Vox2VecPretrainTrainer_UNet):
    """50 iterations (2 epochs x 25) of 2 volumes x 1,000 positions: 4 patches of a ResEnc
    U-Net's plans at once (its 3d_fullres patches are larger than the FPN's)."""

    num_volumes = 2
    num_positions = 1000
    budget = _short(2, 25)


class Vox2VecPretrainTrainer_UNet_AcceptanceSmoke(_ShortPretraining, Vox2VecPretrainTrainer_UNet):
    """6 iterations (2 epochs x 3) of 2 volumes x 64 positions."""

    num_volumes = 2
    num_positions = 64
    budget = _short(2, 3)


class nnUNetTrainer_Vox2VecFineTune_Acceptance(_PredictInsteadOfValidation, nnUNetTrainer_Vox2VecFineTune):
    """50 iterations (2 epochs x 25), 5 pseudo-validation batches per epoch: epoch 0 trains with the
    encoder frozen, epoch 1 the whole network (each warm-up stage one epoch)."""

    budget = _short(2, 25, 5)


class nnUNetTrainer_Vox2VecFineTune_AcceptanceSmoke(_PredictInsteadOfValidation,
                                                    nnUNetTrainer_Vox2VecFineTune):
    """6 iterations (2 epochs x 3), one pseudo-validation batch per epoch."""

    budget = _short(2, 3, 1)
