"""Loading weights safely and checking that a backbone fits a network.

Every file is loaded with ``torch.load(..., weights_only=True, map_location="cpu")``: a
checkpoint is untrusted input, and only tensors and plain containers are accepted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from vox2vec_nnunet.errors import Vox2VecError

BACKBONE_PREFIX = "backbone."


def load_weights_file(path: str | Path) -> dict:
    """Load a weights file with ``weights_only=True`` on the CPU, or explain why not."""
    path = Path(path)
    if not path.is_file():
        raise Vox2VecError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise Vox2VecError(f"{path}: cannot be loaded as a weights file with torch.load(weights_only=True): "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Only plain state "
                           f"dicts and nnU-Net checkpoints (tensors in plain containers) are accepted.") from None
    if not isinstance(obj, dict):
        raise Vox2VecError(f"{path}: holds a {type(obj).__name__}, not a state dict or an nnU-Net checkpoint")
    return obj


def network_weights(checkpoint: Mapping, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an nnU-Net checkpoint (``network_weights``) or of a plain state dict."""
    state = checkpoint.get("network_weights", checkpoint)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Vox2VecError(f"{path}: neither an nnU-Net checkpoint with 'network_weights' nor a state dict of "
                           f"tensors (top-level keys: {sorted(checkpoint)[:8]})")
    return dict(state)


def backbone_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``backbone.`` entries of a vox2vec network's state dict, prefix removed."""
    return {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}


def check_backbone_fits(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                        path: str | Path) -> None:
    """Raise a clear error unless ``found`` has every key of ``expected`` with the same shape."""
    missing = [k for k in expected if k not in found]
    wrong = [(k, tuple(found[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in found and found[k].shape != v.shape]
    if not missing and not wrong:
        return
    hint = ("The backbone was built with other FPN settings: plan the dataset with the same --base_channels "
            "and --num_levels as the pre-training (vox2vec_nnunet_plan), or use a matching checkpoint.")
    if missing and not wrong and len(missing) == len(expected):
        raise Vox2VecError(f"{path}: holds no vox2vec FPN backbone weights (expected keys like "
                           f"'{BACKBONE_PREFIX}{next(iter(expected))}'). Import published FPN weights with "
                           f"vox2vec_nnunet_import_weights first.")
    details = [f"missing {BACKBONE_PREFIX}{k}" for k in missing[:3]]
    details += [f"{BACKBONE_PREFIX}{k}: checkpoint {s} vs network {n}" for k, s, n in wrong[:3]]
    raise Vox2VecError(f"{path}: its backbone does not match the network "
                       f"({len(missing)} missing, {len(wrong)} with other shapes; e.g. {'; '.join(details)}). {hint}")
