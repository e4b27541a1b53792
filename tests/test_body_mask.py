"""Body mask and body bounding box (paper sec. 3.1 and 4.1), in HU and without units (MR)."""
import numpy as np
import pytest

from mr_volumes import SPACING, dice, mr_volume
from vox2vec_nnunet.pretraining.body_mask import (air_bounding_box, body_bounding_box, body_from_air, body_mask,
                                                  unitless_air)

SHAPE = (12, 40, 48)  # (z, y, x), slice axis first


def _ellipse(shape: tuple[int, int, int], center: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    _, y, x = np.indices(shape)
    return ((y - center[0]) / radii[0]) ** 2 + ((x - center[1]) / radii[1]) ** 2 <= 1.0


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue ellipse (40 HU) in air (-1000) with a lung (-850) that runs through every
    slice, a gas bubble inside the lung and a bowel-gas pocket in the soft tissue.
    Returns the HU volume and the expected body mask."""
    body = _ellipse(SHAPE, (20, 24), (15, 19))
    image = np.where(body, 40.0, -1000.0).astype(np.float32)
    image[_ellipse(SHAPE, (18, 15), (6, 5))] = -850.0
    image[4:7, 17:20, 14:17] = -1000.0  # gas bubble inside the lung
    z, y, x = np.indices(SHAPE)
    image[(z - 8) ** 2 + (y - 24) ** 2 + (x - 34) ** 2 <= 4] = -1000.0  # bowel gas
    return image, body


def test_enclosed_air_is_body_outside_air_is_not() -> None:
    image, expected = _phantom()
    mask = body_mask(image)
    assert mask.dtype == bool and mask.shape == SHAPE
    np.testing.assert_array_equal(mask, expected)
    assert mask[5, 18, 15] and mask[8, 24, 34]  # gas bubble and bowel gas
    assert mask[0, 18, 15] and mask[-1, 18, 15]  # lung touching the first/last slice stays body


def test_air_touching_the_in_plane_border_is_background() -> None:
    image = np.full(SHAPE, -1000.0, dtype=np.float32)
    image[:, 10:30, :] = 40.0  # a body band spanning the full slice width
    image[:, 18:22, :6] = -1000.0  # an air notch open to the left border
    image[:, 14:16, 20:24] = -1000.0  # an enclosed pocket
    mask = body_mask(image)
    assert not mask[:, 18:22, :6].any()
    assert mask[:, 14:16, 20:24].all()
    assert not mask[:, :10].any() and not mask[:, 30:].any()
    assert mask[:, 10:18].all() and mask[:, 22:30].all() and mask[:, 18:22, 6:].all()


def test_full_connectivity_reaches_diagonal_air() -> None:
    """Air touching outside air only through a 3-D corner is outside air (26-connectivity)."""
    image = np.full((3, 7, 7), 40.0, dtype=np.float32)
    image[0, 0, 0] = -1000.0  # on the in-plane border: outside air
    image[1, 1, 1] = -1000.0  # its diagonal neighbour
    image[1, 3, 3] = -1000.0  # enclosed
    mask = body_mask(image)
    assert not mask[0, 0, 0] and not mask[1, 1, 1] and mask[1, 3, 3]
    assert mask.sum() == mask.size - 2


def test_body_filling_the_slices_and_empty_volume() -> None:
    assert body_mask(np.full((2, 5, 6), 40.0)).all()
    assert not body_mask(np.full((2, 5, 6), -1000.0)).any()


def test_bounding_box_of_voxels_above_minus_500() -> None:
    image, _ = _phantom()
    image[:2] = -1000.0
    image[9, 3, 10] = -400.0  # a bright voxel outside the ellipse widens the box
    box = body_bounding_box(image)
    assert box == (slice(2, 12), slice(3, 36), slice(5, 44))


def test_bounding_box_threshold_is_strict() -> None:
    image = np.full((4, 5, 6), -1000.0)
    image[1, 2, 3] = -500.0
    with pytest.raises(ValueError, match="no voxel above"):
        body_bounding_box(image)
    image[2, 1, 4] = -499.0
    assert body_bounding_box(image) == (slice(2, 3), slice(1, 2), slice(4, 5))


@pytest.mark.parametrize("function", [body_mask, body_bounding_box])
def test_bad_input(function) -> None:
    with pytest.raises(ValueError, match="3-D"):
        function(np.zeros((4, 4)))
    bad = np.zeros((2, 3, 4))
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        function(bad)


def test_patient_table_below_the_body_is_background() -> None:
    """A table of two shells around an enclosed foam core, separated from the body by a
    mattress below -500 HU: the flood fill leaves it, the body mask drops it. Its core
    makes it larger than the body in voxels, but it holds fewer voxels of tissue."""
    shape = (6, 60, 64)
    image = np.full(shape, -1000.0, dtype=np.float32)
    body = _ellipse(shape, (18, 32), (10, 12))
    image[body] = 40.0
    image[:, 30:34, 2:62] = -850.0  # mattress
    image[:, 34:58, 1:63] = 200.0  # table: shells
    image[:, 35:57, 2:62] = -950.0  # enclosed foam core
    mask = body_mask(image)
    np.testing.assert_array_equal(mask, body)
    table = np.zeros(shape, dtype=bool)
    table[:, 34:58, 1:63] = True
    assert (image[table] >= -500).sum() < body.sum() < table.sum()  # fewer tissue voxels, more voxels


@pytest.mark.parametrize("contrast", ["T1", "T2"])
def test_mr_body_mask_needs_no_hounsfield_units(contrast: str) -> None:
    """Synthetic MR (no unit, Rician noise in the air, fat bright (T1) or dark (T2), dark lungs and
    spine inside, a smooth bias field, zero-padded borders, 4 mm slices of 1.5 mm pixels): the
    unit-free air gives the true body, lungs and spine included; the same mask on the intensities
    scaled, and z-scored inside the nonzero region as nnU-Net does; z-scoring the whole image
    (the zero padding becomes its darkest value) changes at most a few boundary voxels."""
    for seed in range(3):
        image, expected, labels = mr_volume(seed=seed, contrast=contrast)
        mask = body_from_air(unitless_air(image, SPACING))
        assert dice(mask, expected) > 0.999 and mask[labels == 2].all()
        assert not mask[:, :, :4].any() and not mask[:, -3:].any()  # the zero padding
        np.testing.assert_array_equal(body_from_air(unitless_air(image * 0.01, SPACING)), mask)
        data = image != 0
        zscored = np.where(data, (image - image[data].mean()) / image[data].std(), 0.0)
        np.testing.assert_array_equal(body_from_air(unitless_air(zscored, SPACING)), mask)
        whole = (image - image.mean()) / image.std()
        assert (body_from_air(unitless_air(whole, SPACING)) != mask).sum() < 0.002 * mask.sum()


def test_mr_air_thresholds_the_robust_range_and_smoothing_spreads_no_fat() -> None:
    """Air is below p2 + 0.1 (p98 - p2) of the data voxels; a bright edge does not grow into the
    air by smoothing, and a noise speckle in the air stays air."""
    image = np.full((3, 30, 30), 10.0, dtype=np.float32)
    image[:, 8:22, 8:22] = 100.0
    image[:, 8:22, 8] = 1000.0  # bright fat edge
    image[1, 3, 3] = 60.0  # speckle, above the threshold on its own
    air = unitless_air(image, (1.0, 1.0, 1.0))
    body = np.zeros_like(air)
    body[:, 8:22, 8:22] = True
    np.testing.assert_array_equal(~air, body)
    np.testing.assert_array_equal(body_from_air(air), body)
    assert unitless_air(np.zeros((2, 4, 4)), (1.0, 1.0, 1.0)).all()
    with pytest.raises(ValueError, match="spacing"):
        unitless_air(image, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="air everywhere"):
        air_bounding_box(np.ones((2, 3, 4), dtype=bool))
    assert air_bounding_box(air) == (slice(0, 3), slice(8, 22), slice(8, 22))
