"""Body mask and body bounding box of a volume (paper sec. 3.1 and 4.1; docs/method.md, "Body mask").

Array convention (used by every module of ``vox2vec_nnunet.pretraining``): a volume is a
3-D array laid out like nnU-Net's preprocessed arrays without the channel axis,
``(z, y, x)`` = (slice axis, in-plane, in-plane). Our plans put the slice axis first at
2 x 1 x 1 mm spacing, so the paper's patch (H, W, D) = (128, 128, 32) is (32, 128, 128)
here. CT intensities are in Hounsfield units (HU).

Background = air that is connected to the outside of the patient. The paper (sec. 3.1)
thresholds at -500 HU and keeps the connected component of the corner voxel with a flood
fill; following the reference implementation, every axial slice first gets a one-voxel
frame of air, so that air touching the in-plane border of any slice is reached from the
corner even when the patient fills the corner itself. The slice axis is not padded: air
enclosed in-plane (lungs, bowel gas) stays body even where it touches the first or last
slice. Background voxels are never sampled for the contrastive loss.

What is not outside air may still not be the patient: the patient table (and its shells
around a foam core, and anything else separated from the patient by air, such as a blanket
or a cable) lies below the patient with a mattress and air between them. Of the connected
parts that are not outside air, only the one holding the most tissue (voxels at or above
-500 HU) is the body; the others are background. The reference implementation keeps them,
so it samples positions on the table; this is a deliberate difference (docs/method.md,
"Where this implementation differs"). A body part separated from the trunk by air in every slice (an arm held
beside the body) is dropped with them.

Images without physical units (MR, and any channel that is not CT) have no -500 HU; only the
definition of air changes (:func:`unitless_air`), the rest is the same (:func:`body_from_air`).
Air is the dark part of the image: below ``p2 + 0.1 * (p98 - p2)``, FSL BET's robust threshold
(Smith 2002, Hum. Brain Mapp. 17:143), where ``p2``, ``p98`` are the 2nd and 98th percentiles of
the smoothed voxels holding data. A voxel is air when it is below the threshold itself or after
smoothing: smoothing alone would spread bright fat a voxel into the air around the body, the
value alone would let noise speckles in the air count as tissue. Voxels that are exactly zero hold no
data (zero-padded borders, the outside of nnU-Net's nonzero mask, which its z-scoring leaves at
zero) and are air too. The rule depends on no scale or offset (MR intensities have none that
holds from scan to scan): a positive affine change of the intensities that keeps the zeros
(nnU-Net's z-scoring inside the nonzero mask) gives the same mask; z-scoring the whole image
turns the zero padding into its darkest value, which the threshold finds instead. A
smooth multiplicative bias field only moves tissue within the 90% of the range above the
threshold. Dark tissue enclosed by the body (lungs, cortical bone, tendons) is body, as enclosed
air is in CT. Smoothing (a Gaussian of one voxel along the finest axis, proportionally less
along coarser ones, so thick slices are not smeared) is normalised by the data mask, so that
the zeros outside the data do not leak into it.
"""
from typing import Sequence

import cc3d
import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask
from scipy.ndimage import gaussian_filter

BODY_THRESHOLD_HU = -500.0
"""Voxels below this intensity are air (paper sec. 3.1 and 4.1)."""
ROBUST_PERCENTILES = (2.0, 98.0)
ROBUST_FRACTION = 0.1
"""Unit-free air: below ``p2 + 0.1 * (p98 - p2)`` (FSL BET's robust threshold)."""


def _check_volume(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected a 3-D volume (z, y, x), got an array of shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("the volume contains NaN or infinite intensities")
    return image


def body_mask(image_hu: np.ndarray) -> np.ndarray:
    """Body mask of a CT volume ``(z, y, x)`` in HU: True inside the patient.

    docs/method.md, "Body mask": air = HU < -500, then :func:`body_from_air`.
    """
    return body_from_air(_check_volume(image_hu) < BODY_THRESHOLD_HU)


def body_from_air(air: np.ndarray) -> np.ndarray:
    """Body mask ``(z, y, x)`` from an air mask: pad air by one voxel with True on the two
    in-plane axes; the connected component (full, 26-connectivity) of the corner voxel is the
    outside air; remove the padding; not outside air = candidate body. Enclosed air (lungs,
    bowel gas) therefore counts as body. Then, of the connected parts (26-connectivity) of
    the candidate body, the one with the most voxels that are not air is the body; the others
    (the patient table, module docstring) are background.
    """
    air = np.asarray(air, dtype=bool)
    framed_air = np.pad(air, ((0, 0), (1, 1), (1, 1)), mode="constant", constant_values=True)
    labels = cc3d.connected_components(framed_air, connectivity=26)
    candidate = labels[:, 1:-1, 1:-1] != labels[0, 0, 0]
    del framed_air, labels
    parts, count = cc3d.connected_components(candidate, connectivity=26, return_N=True)
    if count <= 1:
        return candidate
    tissue = np.bincount(parts[~air], minlength=count + 1)
    tissue[0] = 0
    return parts == np.argmax(tissue)


def unitless_air(image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Air of a volume ``(z, y, x)`` without physical units (MR; raw or z-scored), voxel
    ``spacing`` per axis: exact zeros, and voxels darker than the robust threshold after
    smoothing (module docstring). All air if the volume holds no data."""
    image = _check_volume(image)
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (3,) or (spacing <= 0).any():
        raise ValueError(f"spacing must be three positive numbers, got {spacing.tolist()}")
    data = image != 0
    if not data.any():
        return np.ones(image.shape, dtype=bool)
    sigma = spacing.min() / spacing
    weight = gaussian_filter(data.astype(np.float32), sigma, mode="constant")
    smoothed = gaussian_filter(np.where(data, image, 0).astype(np.float32), sigma, mode="constant")
    smoothed = np.divide(smoothed, weight, out=np.zeros_like(smoothed), where=data)
    low, high = np.percentile(smoothed[data], ROBUST_PERCENTILES)
    threshold = low + ROBUST_FRACTION * (high - low)
    return ~data | (smoothed < threshold) | (image < threshold)


def scan_air(data: np.ndarray, ct: Sequence[bool], masked: bool, spacing: Sequence[float]) -> np.ndarray:
    """Air ``(z, y, x)`` of a preprocessed scan ``(C, z, y, x)`` with its channels' CT flags ``ct``:
    below -500 HU in the first CT channel; without one, the outside of the nonzero mask when the
    scan was z-scored inside it (``masked``), else :func:`unitless_air` of channel 0."""
    if any(ct):
        return _check_volume(data[list(ct).index(True)]) < BODY_THRESHOLD_HU
    return (data == 0).all(axis=0) if masked else unitless_air(data[0], spacing)


def air_bounding_box(air: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every voxel that is not air (ValueError if none)."""
    if air.all():
        raise ValueError("the volume is air everywhere, so it has no body bounding box")
    return bounding_box_to_slice(get_bbox_from_mask(~air))


def body_bounding_box(image_hu: np.ndarray, threshold: float = BODY_THRESHOLD_HU) -> tuple[slice, ...]:
    """Slices of the smallest box holding every voxel brighter than ``threshold`` HU.

    This is the paper's pre-processing crop (sec. 4.1: "cropping to the minimal volume
    containing all the voxels with the intensity greater than -500 HU").
    """
    image_hu = _check_volume(image_hu)
    above = image_hu > threshold
    if not above.any():
        raise ValueError(f"the CT volume has no voxel above {threshold} HU, so it has no body bounding box")
    return bounding_box_to_slice(get_bbox_from_mask(above))
