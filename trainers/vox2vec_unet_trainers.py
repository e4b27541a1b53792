"""vox2vec trainers for nnU-Net's own U-Nets, for ``nnUNetv2_train -tr NAME``."""
from vox2vec_nnunet.training.unet_finetuning import nnUNetTrainer_Vox2VecFineTune

__all__ = ["nnUNetTrainer_Vox2VecFineTune"]
