"""Checks of a user's nnU-Net environment, with the exact fix in each message."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from vox2vec_nnunet.errors import Vox2VecError

NNUNET_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")

#: nnU-Net's trainer search imports every trainer module, Primus's with it, which imports timm;
#: the timm that dynamic-network-architectures 0.4.x admits (< 1.0.23) calls the deprecated
#: ``torch.jit.interface`` at import, a FutureWarning at the top of every training log. Only this
#: one warning is silenced (a ``PYTHONWARNINGS`` entry; the README gives the same line to users).
TIMM_JIT_WARNING_FILTER = "ignore:`torch.jit.interface` is deprecated:FutureWarning"


def trainers_dir() -> Path:
    """The installed folder of vox2vec trainer modules, what ``nnUNet_extTrainer`` must list."""
    import vox2vec_nnunet_trainers

    return Path(vox2vec_nnunet_trainers.__file__).resolve().parent


def training_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for the ``nnUNetv2_train`` processes our commands start: the timm warning filtered."""
    warnings = [w for w in env.get("PYTHONWARNINGS", "").split(",") if w]
    if TIMM_JIT_WARNING_FILTER not in warnings:
        warnings.append(TIMM_JIT_WARNING_FILTER)
    return {**env, "PYTHONWARNINGS": ",".join(warnings)}


def require_path_variable(name: str) -> Path:
    """The folder an nnU-Net path variable names; a clear error if it is unset."""
    value = os.environ.get(name)
    if not value:
        raise Vox2VecError(f"the environment variable {name} is not set. Fix: export {name}=/path/to/{name} "
                           f"(see `vox2vec_nnunet_doctor`)")
    return Path(value)


def dataset_name(dataset: str | int) -> str:
    """``DatasetXXX_Name`` for an ID or name, looked up in nnU-Net's folders, or a one-line error
    naming the dataset, the folders searched and the datasets that exist there."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    folders = [require_path_variable(name) for name in NNUNET_PATH_VARIABLES[:2]]
    try:
        return maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError):
        pass
    results = os.environ.get("nnUNet_results")
    searched = [*folders, *([Path(results)] if results else [])]
    existing = sorted({p.name for folder in searched if folder.is_dir() for p in folder.iterdir()
                       if p.is_dir() and p.name.startswith("Dataset")})
    raise Vox2VecError(f"dataset {dataset!r} was not found in {', '.join(map(str, searched))}; datasets there: "
                       f"{', '.join(existing) if existing else 'none'}")


def resolve_device(device: torch.device) -> torch.device:
    """CUDA when asked for and present; otherwise the CPU, with all its threads, and a note.

    ``nnUNetv2_train`` asks for CUDA by default and restricts torch to one thread when it does,
    so without a GPU the trainers fall back here instead of failing.
    """
    if device.type == "cuda" and not torch.cuda.is_available():
        print("vox2vec: no CUDA device is available, training on the CPU (pass -device cpu to silence this)")
        torch.set_num_threads(os.cpu_count() or 1)
        return torch.device("cpu")
    return device
