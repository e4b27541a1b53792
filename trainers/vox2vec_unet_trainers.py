"""vox2vec trainers for nnU-Net's own U-Nets, for ``nnUNetv2_train -tr NAME`` (their short-budget
variants are in ``vox2vec_variant_trainers``)."""
from vox2vec_nnunet.training.unet_finetuning import (nnUNetTrainer_Vox2VecFineTune, nnUNetTrainer_Vox2VecScratch,
                                                     nnUNetTrainer_Vox2VecScratchWarmup)
from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet

__all__ = ["Vox2VecPretrainTrainer_UNet", "nnUNetTrainer_Vox2VecFineTune", "nnUNetTrainer_Vox2VecScratch",
           "nnUNetTrainer_Vox2VecScratchWarmup"]
