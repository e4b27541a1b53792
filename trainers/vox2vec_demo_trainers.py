"""Short-budget vox2vec pre-training trainers for CPU demos, for ``nnUNetv2_train -tr NAME``."""
from vox2vec_nnunet.training.demo_variants import Vox2VecPretrainTrainer_Demo, Vox2VecPretrainTrainer_DemoLong

__all__ = ["Vox2VecPretrainTrainer_Demo", "Vox2VecPretrainTrainer_DemoLong"]
