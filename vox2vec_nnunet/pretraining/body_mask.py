"""Body mask and body bounding box of a CT volume (paper sec. 3.1 and 4.1; SPEC "Body mask").

Array convention (used by every module of ``vox2vec_nnunet.pretraining``): a volume is a
3-D array laid out like nnU-Net's preprocessed arrays without the channel axis,
``(z, y, x)`` = (slice axis, in-plane, in-plane). Our plans put the slice axis first at
2 x 1 x 1 mm spacing, so the paper's patch (H, W, D) = (128, 128, 32) is (32, 128, 128)
here. Intensities are in Hounsfield units (HU).

Background = air that is connected to the outside of the patient. The paper (sec. 3.1)
thresholds at -500 HU and keeps the connected component of the corner voxel with a flood
fill; following the reference implementation, every axial slice first gets a one-voxel
frame of air, so that air touching the in-plane border of any slice is reached from the
corner even when the patient fills the corner itself. The slice axis is not padded: air
enclosed in-plane (lungs, bowel gas) stays body even where it touches the first or last
slice. Background voxels are never sampled for the contrastive loss.
"""
import cc3d
import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask

BODY_THRESHOLD_HU = -500.0
"""Voxels below this intensity are air (paper sec. 3.1 and 4.1)."""


def _check_volume(image_hu: np.ndarray) -> np.ndarray:
    image_hu = np.asarray(image_hu)
    if image_hu.ndim != 3:
        raise ValueError(f"expected a 3-D CT volume (z, y, x) in HU, got an array of shape {image_hu.shape}")
    if not np.isfinite(image_hu).all():
        raise ValueError("the CT volume contains NaN or infinite intensities")
    return image_hu


def body_mask(image_hu: np.ndarray) -> np.ndarray:
    """Body mask of a CT volume ``(z, y, x)`` in HU: True inside the patient.

    SPEC "Body mask": air = HU < -500; pad air by one voxel with True on the two in-plane
    axes; the connected component (full, 26-connectivity) of the corner voxel is the
    outside air; remove the padding; body = not outside air. Enclosed air (lungs, bowel
    gas) therefore counts as body.
    """
    image_hu = _check_volume(image_hu)
    air = image_hu < BODY_THRESHOLD_HU
    framed_air = np.pad(air, ((0, 0), (1, 1), (1, 1)), mode="constant", constant_values=True)
    labels = cc3d.connected_components(framed_air, connectivity=26)
    outside_air = labels == labels[0, 0, 0]
    return ~outside_air[:, 1:-1, 1:-1]


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
