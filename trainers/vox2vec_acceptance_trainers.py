"""Short trainer runs of the GPU acceptance run (``python -m vox2vec_nnunet.perf.gpu_acceptance``), for
``nnUNetv2_train -tr NAME``; defined in ``vox2vec_nnunet.training.acceptance_variants``."""
from vox2vec_nnunet.training.acceptance_variants import (
    Vox2VecPretrainTrainer_Acceptance, Vox2VecPretrainTrainer_AcceptanceSmoke, Vox2VecPretrainTrainer_UNet_Acceptance,
    Vox2VecPretrainTrainer_UNet_AcceptanceSmoke, Vox2VecTrainer_FineTune_Acceptance,
    Vox2VecTrainer_FineTune_AcceptanceSmoke, nnUNetTrainer_Vox2VecFineTune_Acceptance,
    nnUNetTrainer_Vox2VecFineTune_AcceptanceSmoke)

__all__ = ["Vox2VecPretrainTrainer_Acceptance", "Vox2VecPretrainTrainer_AcceptanceSmoke",
           "Vox2VecPretrainTrainer_UNet_Acceptance", "Vox2VecPretrainTrainer_UNet_AcceptanceSmoke",
           "Vox2VecTrainer_FineTune_Acceptance", "Vox2VecTrainer_FineTune_AcceptanceSmoke",
           "nnUNetTrainer_Vox2VecFineTune_Acceptance", "nnUNetTrainer_Vox2VecFineTune_AcceptanceSmoke"]
