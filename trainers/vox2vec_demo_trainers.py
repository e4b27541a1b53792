"""Short-budget vox2vec trainers for CPU demos, for ``nnUNetv2_train -tr NAME``."""
from vox2vec_nnunet.training.demo_variants import (Vox2VecTrainer_LinearProbe_Demo,
                                                   Vox2VecTrainer_LinearProbe_DemoLong,
                                                   Vox2VecTrainer_LinearProbe_RandomInit_Demo,
                                                   Vox2VecTrainer_LinearProbe_RandomInit_DemoLong,
                                                   Vox2VecTrainer_LinearProbe_RandomInitBN_Demo,
                                                   Vox2VecTrainer_LinearProbe_RandomInitBN_DemoLong)

__all__ = ["Vox2VecTrainer_LinearProbe_Demo", "Vox2VecTrainer_LinearProbe_DemoLong",
           "Vox2VecTrainer_LinearProbe_RandomInit_Demo", "Vox2VecTrainer_LinearProbe_RandomInit_DemoLong",
           "Vox2VecTrainer_LinearProbe_RandomInitBN_Demo", "Vox2VecTrainer_LinearProbe_RandomInitBN_DemoLong"]
