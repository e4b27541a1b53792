"""Pre-training variants: the CPU demo budgets and seeded runs, for ``nnUNetv2_train -tr NAME``.

The scaled-down model itself (FPN width and depth, patch, spacing) lives in the plans, written
by ``vox2vec_nnunet_prepare_pretraining`` options; ``*_Demo`` / ``*_DemoLong`` change only how
long and with how many volumes and positions the pre-training runs (SPEC section 4).

Seeded runs: ``NAME_Seed{S}`` is ``NAME`` with ``seed = S`` (0 <= S < 2**63), for
``Vox2VecPretrainTrainer``, ``Vox2VecPretrainTrainer_Demo`` and ``Vox2VecPretrainTrainer_DemoLong``,
e.g. ``-tr Vox2VecPretrainTrainer_Demo_Seed0``. The classes are made when first looked up (a
module ``__getattr__``, PEP 562, see :func:`seeded_lookup`), which is how nnU-Net's trainer
search asks for them (``hasattr(module, NAME)``), so any seed a training log printed repeats
that run; each seeded variant has its own results folder. The same seed gives the same batches, augmentation and
initial weights (see :mod:`vox2vec_nnunet.training.pretraining`).
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch

from vox2vec_nnunet.training.pretraining import Vox2VecPretrainTrainer

DEVICE = torch.device("cuda")


class Vox2VecPretrainTrainer_Demo(Vox2VecPretrainTrainer):
    """300 iterations of 4 volumes x 256 positions (paper: 100,000 of 10 x 1,000), a snapshot
    every 100 iterations. 300, not more, for the demo's time: on the demo phantoms (seed 0, 3 folds)
    the linear probe reached 27.6 ± 3.2 Dice after 100 iterations, 44.0 ± 4.6 after 300 and
    45.4 ± 7.3 after 500 (README "How long to pre-train")."""

    num_volumes = 4
    num_positions = 256
    snapshot_every = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 6
        self.num_iterations_per_epoch = 50
        self.save_every = 1


class Vox2VecPretrainTrainer_DemoLong(Vox2VecPretrainTrainer_Demo):
    """2,000 iterations of 4 volumes x 256 positions."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 40


_SEEDED_NAME = re.compile(r"(?P<base>\w+)_Seed(?P<seed>0|[1-9][0-9]*)")


def seeded_name(base: str, seed: int) -> str:
    """The trainer name of ``base`` with ``seed``: ``Vox2VecPretrainTrainer_Demo_Seed0``."""
    return f"{base}_Seed{seed}"


def unseeded_name(name: str) -> str:
    """``name`` without its ``_Seed{S}`` ending: the pre-training run that seeds repeat."""
    match = _SEEDED_NAME.fullmatch(name)
    return name if match is None else match["base"]


def seeded_lookup(module: str, *bases: type[Vox2VecPretrainTrainer]) -> Callable[[str], type]:
    """A module ``__getattr__`` (PEP 562) that makes ``NAME_Seed{S}``, ``NAME`` with
    ``seed = S`` (0 <= S < 2**63), for each of ``bases``: ``__getattr__ = seeded_lookup(__name__,
    MyPretrainTrainer)`` in a module of an ``nnUNet_extTrainer`` folder gives any subclass seeded
    variants. Each class is made once and belongs to ``module``, so pickle finds it there."""
    by_name = {cls.__name__: cls for cls in bases}
    made: dict[str, type[Vox2VecPretrainTrainer]] = {}

    def __getattr__(name: str) -> type[Vox2VecPretrainTrainer]:
        match = _SEEDED_NAME.fullmatch(name)
        if match is None or match["base"] not in by_name or int(match["seed"]) >= 2 ** 63:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if name not in made:
            base = by_name[match["base"]]
            made[name] = type(name, (base,), {
                "seed": int(match["seed"]), "__module__": module, "__qualname__": name,
                "__doc__": f"{base.__name__} with seed = {match['seed']}."})
        return made[name]

    return __getattr__


__getattr__ = seeded_lookup(__name__, Vox2VecPretrainTrainer, Vox2VecPretrainTrainer_Demo,
                            Vox2VecPretrainTrainer_DemoLong)
