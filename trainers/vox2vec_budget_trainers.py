"""Every evaluation setup's trainer at the short budgets (``NAME_Demo``, ``NAME_DemoLong``), for
``nnUNetv2_train -tr NAME``; generated in ``vox2vec_nnunet.training.budget_variants``."""
from vox2vec_nnunet.training.budget_variants import *  # noqa: F401,F403 (the generated classes)
from vox2vec_nnunet.training.budget_variants import __all__  # noqa: F401
