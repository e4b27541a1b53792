"""vox2vec trainers for nnU-Net's own U-Nets, for ``nnUNetv2_train -tr NAME``."""
from vox2vec_nnunet.training.unet_finetuning import (nnUNetTrainer_Vox2VecFineTune, nnUNetTrainer_Vox2VecFineTune_Demo,
                                                     nnUNetTrainer_Vox2VecScratch, nnUNetTrainer_Vox2VecScratch_Demo,
                                                     nnUNetTrainer_Vox2VecScratchWarmup,
                                                     nnUNetTrainer_Vox2VecScratchWarmup_Demo)
from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet, Vox2VecPretrainTrainer_UNet_Demo

__all__ = ["Vox2VecPretrainTrainer_UNet", "Vox2VecPretrainTrainer_UNet_Demo", "nnUNetTrainer_Vox2VecFineTune",
           "nnUNetTrainer_Vox2VecFineTune_Demo", "nnUNetTrainer_Vox2VecScratch", "nnUNetTrainer_Vox2VecScratch_Demo",
           "nnUNetTrainer_Vox2VecScratchWarmup", "nnUNetTrainer_Vox2VecScratchWarmup_Demo"]
