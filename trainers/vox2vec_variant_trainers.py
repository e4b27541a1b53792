"""Every vox2vec trainer at the short budgets (``NAME_Demo``, ``NAME_DemoLong``) and the seeded
pre-training runs (``NAME_Seed{S}``), for ``nnUNetv2_train -tr NAME``; each is written out in
``vox2vec_nnunet.training.variants``."""
from vox2vec_nnunet.training.variants import *  # noqa: F401,F403
from vox2vec_nnunet.training.variants import __all__  # noqa: F401
