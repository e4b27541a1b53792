"""Image channels: which are CT, how each is normalised, and whether a CT channel holds HU.

vox2vec's method is bound to CT in three places only: the fixed HU window of the
segmentation plans (paper Sect. 4.2), the body mask's -500 HU threshold (Sect. 3.1, 4.1) and
the HU ranges of the intensity augmentation (Sect. 3.1). A channel is CT exactly when
nnU-Net would normalise it with ``CTNormalization``, i.e. when ``dataset.json``
``channel_names`` calls it ``CT`` (nnU-Net's ``get_normalization_scheme``). Every other
channel gets the normalisation nnU-Net itself chooses for its name (``ZScoreNormalization``,
per image, for MR names such as ``T2``, ``ADC`` or ``FLAIR``), and the three pieces have
unit-free counterparts (:mod:`vox2vec_nnunet.pretraining.body_mask`,
:mod:`vox2vec_nnunet.pretraining.augmentation`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization
from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

CT_NORMALIZATION = CTNormalization.__name__
ZSCORE_NORMALIZATION = "ZScoreNormalization"
HU_KEPT = "NoNormalization"
"""How pre-training data stores a CT channel: in HU, windowed by the augmentation (Sect. 3.1)."""

MIN_HU_OF_A_CT = -200.0
"""A CT in Hounsfield units holds air (about -1000 HU) around the patient, and fat (about
-100 HU) in it; a scan whose values never go below this is not in HU (typically stored
0..4095 without the rescale intercept of -1024)."""


def channel_names(dataset_json: Mapping, source: object) -> dict[str, str]:
    """``channel_names`` of a ``dataset.json`` (or nnU-Net v1's ``modality``), keys in channel order.

    ``source`` names the file in errors (ValueError).
    """
    channels = dataset_json.get("channel_names") or dataset_json.get("modality")
    if not isinstance(channels, Mapping) or not channels:
        raise ValueError(f"{source}: no channel_names")
    if sorted(int(k) for k in channels) != list(range(len(channels))):
        raise ValueError(f"{source}: channel_names keys must be 0, 1, ..., got {sorted(channels)}")
    return {str(k): str(channels[str(k)]) for k in range(len(channels))}


def is_ct(channel_name: str) -> bool:
    """Whether nnU-Net normalises a channel of this name with ``CTNormalization`` (name ``CT``)."""
    return get_normalization_scheme(channel_name) is CTNormalization


def nnunet_normalization(channel_name: str) -> str:
    """The normalisation scheme nnU-Net chooses for a channel of this name."""
    return get_normalization_scheme(channel_name).__name__


def hounsfield_problem(image: np.ndarray) -> str | None:
    """Why a channel named CT is clearly not in Hounsfield units, or None if it may be.

    A CT in HU has values below :data:`MIN_HU_OF_A_CT` (air, fat); one whose lowest value is
    higher is refused, with the value seen.
    """
    lowest = float(np.min(image))
    if lowest >= MIN_HU_OF_A_CT:
        return (f"it is named CT but its values are not Hounsfield units: the lowest is {lowest:g} (range "
                f"{lowest:g}..{float(np.max(image)):g}), with no air near -1000 HU and no fat below "
                f"{MIN_HU_OF_A_CT:g} HU (stored without the rescale intercept, e.g. 0..4095?). Convert it to HU, or "
                f"name the channel for what it is (nnU-Net then z-scores it)")
    return None
