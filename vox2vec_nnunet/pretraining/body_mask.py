"""Body mask and body bounding box of a CT volume (paper sec. 3.1 and 4.1; docs/method.md, "Body mask").

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

What is not outside air may still not be the patient: the patient table (and its shells
around a foam core, and anything else separated from the patient by air, such as a blanket
or a cable) lies below the patient with a mattress and air between them. Of the connected
parts that are not outside air, only the one holding the most tissue (voxels at or above
-500 HU) is the body; the others are background. The reference implementation keeps them,
so it samples positions on the table; this is a deliberate difference (docs/method.md,
"Where this implementation differs"). A body part separated from the trunk by air in every
slice (an arm held beside the body) is dropped with them.
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

    docs/method.md, "Body mask": air = HU < -500; pad air by one voxel with True on the two in-plane
    axes; the connected component (full, 26-connectivity) of the corner voxel is the
    outside air; remove the padding; not outside air = candidate body. Enclosed air (lungs,
    bowel gas) therefore counts as body. Then, of the connected parts (26-connectivity) of
    the candidate body, the one with the most voxels at or above -500 HU is the body; the
    others (the patient table, module docstring) are background.
    """
    image_hu = _check_volume(image_hu)
    air = image_hu < BODY_THRESHOLD_HU
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
