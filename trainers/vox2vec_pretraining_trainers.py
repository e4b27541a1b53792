"""vox2vec pre-training variants for ``nnUNetv2_train -tr NAME``: the CPU demo budgets, and
``NAME_Seed{S}`` (``NAME`` with ``seed = S``), made when nnU-Net's trainer search asks for them."""
from vox2vec_nnunet.training.pretraining_variants import (Vox2VecPretrainTrainer_Demo, Vox2VecPretrainTrainer_DemoLong,
                                                          __getattr__)

__all__ = ["Vox2VecPretrainTrainer_Demo", "Vox2VecPretrainTrainer_DemoLong"]
