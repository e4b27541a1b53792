"""Clinical scan geometry of the phantoms: grid ranges, bodies, the table and the body mask."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import vox2vec_nnunet.phantoms.anatomy as anatomy_module
from vox2vec_nnunet.commands.phantoms import main as phantoms_main
from vox2vec_nnunet.phantoms import (PHANTOM_LABELS, ClinicalConfig, PhantomConfig, ScanGeometry, body_width_mm,
                                     case_seed, clinical_geometry, make_phantom, render_phantom, subject_landmarks)
from vox2vec_nnunet.pretraining.body_mask import BODY_THRESHOLD_HU, body_mask

SEEDS = [case_seed(0, i) for i in range(80)]


@pytest.fixture(scope="module")
def geometries() -> list[ScanGeometry]:
    return [clinical_geometry(seed) for seed in SEEDS]


def _first(geometries: list[ScanGeometry], predicate) -> tuple[int, ScanGeometry]:
    return next((seed, g) for seed, g in zip(SEEDS, geometries) if predicate(g))


def _coarse(geometry: ScanGeometry, factor: int = 4, slice_mm: float = 8.0) -> ScanGeometry:
    """The same scan on a grid ``factor`` times coarser in-plane, slices of at least ``slice_mm``."""
    return geometry.with_spacing((max(slice_mm, geometry.spacing[0]), geometry.spacing[1] * factor,
                                  geometry.spacing[2] * factor))


def test_geometry_ranges(geometries: list[ScanGeometry]) -> None:
    config = ClinicalConfig()
    for g in geometries:
        slices, rows, columns = g.shape
        assert rows == columns == 512
        assert 100 <= slices <= 600
        assert 0.6 <= g.spacing[0] <= 5.0
        assert g.spacing[1] == g.spacing[2]
        small_fov = 0.35 <= g.spacing[1] <= 0.45
        assert small_fov or 0.6 <= g.spacing[1] <= 0.9
        if small_fov:  # thin slices around the kidneys; the body crosses the in-plane border
            assert g.spacing[0] in config.thin_slice_mm and any(g.outline_margin)
            assert 150 <= slices * g.spacing[0] <= 1.1 * 250
        assert g.psf_fwhm_mm[0] == g.spacing[0] and 8.0 <= g.noise_std <= 40.0
    spacings = {g.spacing[0] for g in geometries}
    assert min(spacings) < 1.0 and max(spacings) >= 3.0  # thin and thick series
    small = sum(0.35 <= g.spacing[1] <= 0.45 for g in geometries)
    tables = sum(g.table is not None for g in geometries)
    assert 0.05 * len(geometries) < small < 0.4 * len(geometries)
    assert 0.5 * len(geometries) < tables < 0.9 * len(geometries)
    assert clinical_geometry(SEEDS[3]) == geometries[3]  # drawn from the seed


def test_bodies_from_a_child_to_a_large_adult(geometries: list[ScanGeometry]) -> None:
    widths = [body_width_mm(g, subject_landmarks(seed, g.extra_fat_mm)) for seed, g in zip(SEEDS, geometries)]
    assert 165 < min(widths) < 200 and 370 < max(widths) <= 401
    children = [w for w, g in zip(widths, geometries) if g.body_scale < 0.9]
    assert children and all(170 <= w <= 230 for w in children)
    # The field of view of a standard reconstruction holds the body (unless it is the largest).
    for w, g in zip(widths, geometries):
        if not any(g.outline_margin):
            assert w + 2 * 10.0 <= g.fov_mm[2] + 1e-6


def test_anatomy_is_the_default_subject() -> None:
    """The scan geometry has a stream of its own: the subject's anatomy is unchanged."""
    seed = SEEDS[0]
    landmarks = subject_landmarks(seed)
    default = make_phantom(seed, PhantomConfig(spacing=(10.0, 5.0, 5.0)))
    spine_x = landmarks.kidney_centres  # kidneys of the default phantom lie where the landmarks say
    for label, centre in zip(("kidney_left", "kidney_right"), spine_x):
        voxels = np.argwhere(default.labels == PHANTOM_LABELS[label]).mean(axis=0)
        mm = (voxels - (np.array(default.labels.shape) - 1) / 2) * np.array(default.spacing)
        assert np.linalg.norm(mm - np.array(centre)) < 12.0, label


def _table_voxels(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (image >= BODY_THRESHOLD_HU) & ~mask


@pytest.mark.parametrize("kind", ["child", "large adult"])
def test_table_is_separate_from_the_body_and_not_in_the_body_mask(geometries: list[ScanGeometry],
                                                                 kind: str) -> None:
    if kind == "child":
        seed, geometry = _first(geometries, lambda g: g.table is not None and g.body_scale < 0.9)
    else:
        seed, geometry = _first(geometries, lambda g: g.table is not None and g.extra_fat_mm > 40)
    coarse = _coarse(geometry)
    phantom = render_phantom(seed, coarse)
    mask = body_mask(phantom.image)
    # Without keeping only the body's part, the flood fill alone keeps the table as body.
    air = phantom.image < BODY_THRESHOLD_HU
    framed = cc3d.connected_components(np.pad(air, ((0, 0), (1, 1), (1, 1)), constant_values=True), connectivity=26)
    not_outside = framed[:, 1:-1, 1:-1] != framed[0, 0, 0]
    table = _table_voxels(phantom.image, mask)
    assert table.sum() > 0.002 * table.size and (not_outside & table).sum() > 0.9 * table.sum()
    # The table lies below (posterior to) the body in every column, with at least the
    # mattress between them.
    rows = np.arange(mask.shape[1])[None, :, None]
    both = mask.any(axis=1) & table.any(axis=1)
    assert both.sum() > 0.2 * mask.any(axis=1).sum()
    assert (np.where(table, rows, mask.shape[1]).min(axis=1) > np.where(mask, rows, -1).max(axis=1))[both].all()
    gap = ndimage.distance_transform_edt(~mask, sampling=coarse.spacing)[table].min()
    assert gap >= geometry.table.pad_mm - 2 * coarse.spacing[1]
    # The mask is the body: one part, all organs inside, about as wide as drawn.
    assert cc3d.connected_components(mask, connectivity=26, return_N=True)[1] == 1
    assert mask[phantom.labels > 0].all()
    width = mask.any(axis=(0, 1)).sum() * coarse.spacing[2]
    expected = body_width_mm(geometry, subject_landmarks(seed, geometry.extra_fat_mm))
    assert abs(width - expected) < 0.12 * expected + 25.0


def test_small_field_of_view_crosses_the_border_around_the_kidneys(geometries: list[ScanGeometry]) -> None:
    seed, geometry = _first(geometries, lambda g: 0.35 <= g.spacing[1] <= 0.45)
    small = replace(_coarse(geometry), noise_std=0.0)
    phantom = render_phantom(seed, small)
    mask = body_mask(phantom.image)
    border = np.concatenate([mask[:, 0, :], mask[:, -1, :], mask[:, :, 0], mask[:, :, -1]], axis=1)
    assert border.mean() > 0.2  # the body crosses the in-plane border
    for label in ("kidney_left", "kidney_right"):
        assert (phantom.labels == PHANTOM_LABELS[label]).sum() > 0, label
    # It is a crop of the same drawing on a field of view that holds the whole body: fat and
    # muscle layers are measured from the skin beyond the border, not from the image border.
    ylo, yhi, xlo, xhi = small.outline_margin
    step = small.spacing[1]
    whole = replace(small, shape=small.outline_shape, outline_margin=(0, 0, 0, 0),
                    centre_mm=(small.centre_mm[0], small.centre_mm[1] + (yhi - ylo) / 2 * step,
                               small.centre_mm[2] + (xhi - xlo) / 2 * step))
    reference = render_phantom(seed, whole)
    crop = (slice(None), slice(ylo, ylo + small.shape[1]), slice(xlo, xlo + small.shape[2]))
    inner = (slice(None), slice(3, -3), slice(3, -3))  # the blur differs at the image border
    np.testing.assert_array_equal(phantom.labels, reference.labels[crop])
    np.testing.assert_allclose(phantom.image[inner], reference.image[crop][inner], atol=0.01)


def test_slabs_are_the_slices_of_the_whole_volume(monkeypatch: pytest.MonkeyPatch,
                                                   geometries: list[ScanGeometry]) -> None:
    seed, geometry = _first(geometries, lambda g: g.table is not None)
    small = replace(_coarse(geometry, factor=8, slice_mm=geometry.spacing[0]), shape=(24, 64, 64))
    small = replace(small, psf_fwhm_mm=(3.0 * small.spacing[0], 1.2, 1.2))  # a blur reaching 5 slices
    whole = render_phantom(seed, small)
    monkeypatch.setattr(anatomy_module, "_SLAB_VOXELS", 64 * 64 * 14)  # slabs of 2 slices + margins
    slabbed = render_phantom(seed, small)
    np.testing.assert_array_equal(slabbed.labels, whole.labels)
    np.testing.assert_allclose(slabbed.image, whole.image, atol=1e-3)


def test_bad_clinical_config_is_refused() -> None:
    with pytest.raises(ValueError, match="pixel_mm"):
        ClinicalConfig(pixel_mm=(0.9, 0.6))
    with pytest.raises(ValueError, match="slices"):
        ClinicalConfig(slices=(0, 10))
    with pytest.raises(ValueError, match="downsample"):
        ClinicalConfig(downsample=0)
    with pytest.raises(ValueError, match="seed"):
        clinical_geometry(-1)


def test_command_writes_clinical_scans(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = phantoms_main(["-d", "988", "-n", "1", "--unlabeled", "1", "--seed", "3", "--clinical", "--slices", "120",
                          "160", "--slice_mm", "2.5", "--downsample", "8", "--raw", str(tmp_path), "--no_pbar"])
    assert code == 0
    out = capsys.readouterr().out
    assert "phantom_0000:" in out and "phantom_0001:" in out and "mm wide" in out
    folder = tmp_path / "Dataset988_Phantoms"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["phantoms"]["config_type"] == "ClinicalConfig"
    for i, sub in enumerate(("imagesTr", "imagesTs")):
        case = f"phantom_{i:04d}"
        config = ClinicalConfig(slices=(120, 160), thin_slice_mm=(2.5,), thick_slice_mm=(2.5,), downsample=8)
        geometry = config.case_geometry(case_seed(3, i))
        assert 15 <= geometry.shape[0] <= 20 and geometry.spacing[0] == 20.0  # 120-160 slices of 2.5 mm, 8x coarser
        assert meta["phantoms"]["case_geometries"][case]["shape"] == list(geometry.shape)
        image = sitk.ReadImage(str(folder / sub / f"{case}_0000.nii.gz"))
        assert image.GetSize() == geometry.shape[::-1]
        assert image.GetSpacing() == pytest.approx(geometry.spacing[::-1])
        assert f"phantom_{i:04d}: {geometry.shape[0]:4d} x {geometry.shape[1]} x {geometry.shape[2]} voxels" in out
    assert phantoms_main(["-d", "989", "-n", "1", "--clinical", "--spacing", "5", "2", "2",
                          "--raw", str(tmp_path)]) == 1
    assert "exclude" in capsys.readouterr().err
