"""vox2vec trainers for ``nnUNetv2_train -tr NAME`` (found through ``nnUNet_extTrainer``)."""
from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer
from vox2vec_nnunet.training.segmentation import (Vox2VecTrainer, Vox2VecTrainer_FineTune,
                                                  Vox2VecTrainer_LinearProbe, Vox2VecTrainer_LinearProbe_RandomInit,
                                                  Vox2VecTrainer_NonLinearProbe,
                                                  Vox2VecTrainer_LinearProbe_RandomInitBN,
                                                  Vox2VecTrainer_NonLinearProbe_RandomInit,
                                                  Vox2VecTrainer_NonLinearProbe_RandomInitBN)

__all__ = ["Vox2VecPretrainTrainer", "Vox2VecTrainer", "Vox2VecTrainer_FineTune", "Vox2VecTrainer_LinearProbe",
           "Vox2VecTrainer_LinearProbe_RandomInit", "Vox2VecTrainer_NonLinearProbe",
           "Vox2VecTrainer_NonLinearProbe_RandomInit", "Vox2VecTrainer_LinearProbe_RandomInitBN",
           "Vox2VecTrainer_NonLinearProbe_RandomInitBN"]
