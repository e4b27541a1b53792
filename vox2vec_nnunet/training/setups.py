"""The evaluation setups of the paper (Sect. 4.2) and the nnU-Net trainer that runs each one.

This module is the one place that maps a setup to its trainer. ``needs_weights`` says whether
the trainer starts from the pre-trained vox2vec FPN (``nnUNetv2_train -pretrained_weights``);
setups without it never receive weights: ``scratch`` trains the FPN and the non-linear head from
random initialisation, and the two ``*_random`` setups probe a frozen randomly initialised FPN,
the paper's "random-FPN" baseline of Fig. 2 (docs/method.md, "What a small CPU run can show": say which random baseline a table
shows — these trainers are it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

PRETRAINED = "pretrained"
RANDOM_INIT = "random_init"


@dataclass(frozen=True)
class Setup:
    """One evaluation setup: its command-line name, trainer class name and table label.

    ``random_baseline`` marks the probes on a frozen randomly initialised FPN; ``own_unet`` the
    setups that train nnU-Net's own U-Net of the plans given with ``--unet_plans`` (not default);
    ``reference`` the setup a table pairs this one with, fold by fold: from scratch on the same
    network.
    """

    name: str
    trainer: str
    needs_weights: bool
    label: str
    random_baseline: bool = False
    own_unet: bool = False

    @property
    def reference(self) -> str:
        return "unet_scratch" if self.own_unet else "scratch"

    @property
    def expected_backbone_source(self) -> str:
        """What the trainer's run record must say about the backbone (``vox2vec_run.json``)."""
        return PRETRAINED if self.needs_weights else RANDOM_INIT


SETUPS: dict[str, Setup] = {s.name: s for s in (
    Setup("scratch", "Vox2VecTrainer", False, "from scratch"),
    Setup("linear_probe", "Vox2VecTrainer_LinearProbe", True, "linear probing"),
    Setup("nonlinear_probe", "Vox2VecTrainer_NonLinearProbe", True, "non-linear probing"),
    Setup("finetune", "Vox2VecTrainer_FineTune", True, "fine-tuning"),
    Setup("linear_probe_random", "Vox2VecTrainer_LinearProbe_RandomInit", False,
          "linear probing, random FPN", random_baseline=True),
    Setup("nonlinear_probe_random", "Vox2VecTrainer_NonLinearProbe_RandomInit", False,
          "non-linear probing, random FPN", random_baseline=True),
    Setup("linear_probe_random_bn", "Vox2VecTrainer_LinearProbe_RandomInitBN", False,
          "linear probing, random FPN, BN re-estimated", random_baseline=True),
    Setup("nonlinear_probe_random_bn", "Vox2VecTrainer_NonLinearProbe_RandomInitBN", False,
          "non-linear probing, random FPN, BN re-estimated", random_baseline=True),
    Setup("unet_scratch", "nnUNetTrainer_Vox2VecScratch", False, "nnU-Net U-Net from scratch", own_unet=True),
    Setup("unet_scratch_warmup", "nnUNetTrainer_Vox2VecScratchWarmup", False,
          "nnU-Net U-Net from scratch, fine-tuning's warm-up", own_unet=True),
    Setup("unet_finetune", "nnUNetTrainer_Vox2VecFineTune", True, "nnU-Net U-Net fine-tuned from vox2vec",
          own_unet=True),
)}


def resolve_setups(names: Sequence[str], trainer_variant: str | None = None) -> list[Setup]:
    """The setups called ``names``, in the given order (duplicates dropped).

    ``trainer_variant`` selects budget variants of the trainers, nnU-Net style: ``Demo`` runs
    ``Vox2VecTrainer_LinearProbe_Demo`` instead of ``Vox2VecTrainer_LinearProbe``; every
    setup's trainer has a variant at each budget of
    ``vox2vec_nnunet.training.budgets.SEGMENTATION_BUDGETS`` (written out in
    ``vox2vec_nnunet.training.variants``). Raises ``ValueError`` naming the unknown setup and
    listing the known ones.
    """
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        raise ValueError(f"unknown setup {', '.join(repr(n) for n in unknown)}; "
                         f"known setups: {', '.join(SETUPS)}")
    setups = [SETUPS[n] for n in dict.fromkeys(names)]
    if trainer_variant:
        setups = [replace(s, trainer=f"{s.trainer}_{trainer_variant}") for s in setups]
    return setups
