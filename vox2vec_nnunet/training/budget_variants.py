"""Every evaluation setup's trainer at every budget of :data:`VARIANT_BUDGETS`, generated.

For each trainer of :data:`vox2vec_nnunet.training.setups.SETUPS` and each budget, a subclass
``{trainer}_{budget}`` (e.g. ``Vox2VecTrainer_Demo``, ``Vox2VecTrainer_FineTune_DemoLong``)
that changes only ``budget``, the nnU-Net way; budgets without test-time mirroring add
:class:`NoTestTimeMirroring`. The classes are attributes of this module, so nnU-Net finds them
by name (``nnUNetv2_train -tr NAME``, ``nnUNetv2_predict -tr NAME``) through ``trainers/``.
"""
from __future__ import annotations

from vox2vec_nnunet.training.setups import SETUPS
from vox2vec_nnunet.training import segmentation
from vox2vec_nnunet.training.budgets import VARIANT_BUDGETS, Budget
from vox2vec_nnunet.training.common import NoTestTimeMirroring
from vox2vec_nnunet.training.segmentation import Vox2VecTrainer


def budget_variant(trainer: type[Vox2VecTrainer], budget: Budget) -> type[Vox2VecTrainer]:
    """``trainer`` at ``budget``: a subclass named ``{trainer.__name__}_{budget.name}``."""
    name = f"{trainer.__name__}_{budget.name}"
    bases = (trainer,) if budget.test_time_mirroring else (NoTestTimeMirroring, trainer)
    return type(name, bases, {"budget": budget, "__module__": __name__, "__qualname__": name,
                              "__doc__": f"{trainer.__name__} at the {budget.name} budget: {budget.describe()}."})


def _generate() -> dict[str, type[Vox2VecTrainer]]:
    # nnU-Net's own U-Nets train with nnUNetTrainer's SGD; their budgets are in unet_finetuning.
    trainers = dict.fromkeys(s.trainer for s in SETUPS.values() if not s.own_unet)
    variants = [budget_variant(getattr(segmentation, t), b) for t in trainers for b in VARIANT_BUDGETS.values()]
    return {v.__name__: v for v in variants}


VARIANTS: dict[str, type[Vox2VecTrainer]] = _generate()
globals().update(VARIANTS)
__all__ = list(VARIANTS)
