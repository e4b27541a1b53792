"""Loading weights safely, checking that a backbone fits a network, and converting the released FPN weights.

Every file is loaded with ``torch.load(..., weights_only=True, map_location="cpu")``: a
checkpoint is untrusted input, and only tensors, plain containers and numpy scalars (which
nnU-Net's own checkpoints hold in their training log) are accepted.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.network.fpn import FPN3d

BACKBONE_PREFIX = "backbone."


PRETRAINED_WEIGHTS_FILE = ("a -pretrained_weights file: an nnU-Net checkpoint with 'network_weights' "
                           "(checkpoint_final.pth or a snapshot of Vox2VecPretrainTrainer, or the output of "
                           "vox2vec_nnunet_import_weights) or a plain state dict of tensors, written with torch.save")
"""What the trainers' ``-pretrained_weights`` check expects (the end of its error messages)."""

PUBLISHED_FPN_FILE = ("the published vox2vec checkpoint: a state dict of the FPN's parameters (tensors named like "
                      "'first_conv.weight'), written with torch.save; or a checkpoint with such an FPN as its "
                      "backbone (written by the trainers of this package or by vox2vec_nnunet_import_weights)")
"""What ``vox2vec_nnunet_import_weights`` and ``vox2vec_nnunet_embed`` expect (docs/method.md,
"Network": the released state dict's names)."""

NUMPY_SCALAR_GLOBALS = (np.dtype, np.float32(0).__reduce__()[0],
                        *(type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                                      np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                                                      np.float64)))
"""What an nnU-Net checkpoint needs besides tensors: its ``logging`` holds numpy scalars (the
pseudo Dice), pickled as numpy's scalar constructor (``numpy._core.multiarray.scalar``;
``numpy.core`` before numpy 2) with a numeric dtype; these build numbers, never run code."""

_UNSAFE_ADVICE = re.compile(r"weights_only\W*(set to\W*)?False", re.IGNORECASE)


def _load_failure(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one sentence without a final period.

    For a pickle that holds more than tensors and plain containers, torch's message advises
    re-running with ``weights_only=False``: the wrong advice for an untrusted file (it would run
    the code in the pickle), so only the refused global or instruction is named. Anything else
    is a file ``torch.save`` did not write, or a damaged one; torch's first sentence says which.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"its pickle holds Python objects beyond tensors and plain containers (the global {refused.group(1)}), "
                f"which loading would run as code; the file is refused")
    unpickler = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.DOTALL)
    if isinstance(error, pickle.UnpicklingError) or unpickler:
        detail = " ".join(unpickler.group(1).split()).rstrip(" .") if unpickler else ""
        return ("it is a pickle, but not of tensors in plain containers as torch.save writes them, and loading it "
                "could run code; the file is refused" + _in_parentheses(detail))
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    first_sentence = re.split(r"(?<=\.) ", first_line)[0].rstrip(" .")
    detail = f"{type(error).__name__}: {first_sentence}" if first_sentence else type(error).__name__
    return "it is not a file torch.save wrote, or it is damaged" + _in_parentheses(detail)


def _in_parentheses(detail: str) -> str:
    """`` (detail)``, or nothing for no detail or one that advises ``weights_only=False``."""
    return f" ({detail})" if detail and not _UNSAFE_ADVICE.search(detail) else ""


def load_weights_file(path: str | Path, expected: str) -> dict:
    """Load a weights file with ``weights_only=True`` on the CPU, or explain why not and what
    file was ``expected`` (:data:`PRETRAINED_WEIGHTS_FILE`, :data:`PUBLISHED_FPN_FILE`)."""
    path = Path(path)
    if not path.is_file():
        raise Vox2VecError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            with torch.serialization.safe_globals(list(NUMPY_SCALAR_GLOBALS)):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise Vox2VecError(f"{path}: cannot be loaded as a weights file with torch.load(weights_only=True): "
                           f"{_load_failure(e)}. Expected {expected}.") from None
    if not isinstance(obj, dict):
        raise Vox2VecError(f"{path}: holds a {type(obj).__name__}, not a state dict or a checkpoint. "
                           f"Expected {expected}.")
    return obj


def network_weights(checkpoint: Mapping, path: str | Path, expected: str) -> dict[str, torch.Tensor]:
    """The state dict of an nnU-Net checkpoint (``network_weights``) or of a plain state dict."""
    state = checkpoint.get("network_weights", checkpoint)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Vox2VecError(f"{path}: neither an nnU-Net checkpoint with 'network_weights' nor a state dict of "
                           f"tensors (top-level keys: {sorted(map(str, checkpoint))[:8]}). Expected {expected}.")
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


def infer_fpn(state: Mapping[str, torch.Tensor], path: str | Path) -> FPN3d:
    """An FPN with the settings the state dict was saved from (from its first conv and depth)."""
    if "first_conv.weight" not in state:
        raise Vox2VecError(f"{path}: not a vox2vec FPN state dict (no 'first_conv.weight'; first keys: "
                           f"{sorted(state)[:5]}). Expected {PUBLISHED_FPN_FILE}.")
    base_channels, in_channels = state["first_conv.weight"].shape[:2]
    levels = 1 + len({k.split(".")[1] for k in state if k.startswith("left_blocks.")})
    return FPN3d(in_channels=in_channels, base_channels=base_channels, num_levels=levels)


def reference_kernels_to_nnunet_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RAS (x, y, z) kernels -> LPS (z, y, x) kernels: reverse the spatial axes, mirror y and x.

    See :mod:`vox2vec_nnunet.commands.import_weights` for the axis conventions.
    """
    return {k: v.permute(0, 1, 4, 3, 2).flip(3, 4).contiguous() if v.ndim == 5 and max(v.shape[2:]) > 1 else v
            for k, v in state.items()}


def import_fpn_state(state: Mapping[str, torch.Tensor], path: str | Path) -> tuple[dict[str, torch.Tensor], FPN3d]:
    """Check a released FPN state dict (or one of ours, under ``backbone.``) against our FPN and
    return it under ``backbone.``, with the FPN it loads into."""
    if any(k.startswith(BACKBONE_PREFIX) for k in state):  # already ours (e.g. a pre-training checkpoint)
        state = backbone_weights(state)
    fpn = infer_fpn(state, path)
    expected = fpn.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise Vox2VecError(
            f"{path}: does not match the vox2vec FPN ({fpn.base_channels} base channels, {fpn.num_levels} levels): "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, "
            f"{len(wrong)} with other shapes {wrong[:3]}")
    fpn.load_state_dict(state)  # also checks dtypes convert
    return {BACKBONE_PREFIX + k: v.clone() for k, v in fpn.state_dict().items()}, fpn
