"""MR phantoms: the CT phantoms' subjects and labels with MR contrast, bias field, Rician noise."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from vox2vec_nnunet.commands.phantoms import main as phantoms_main
from vox2vec_nnunet.phantoms import (PHANTOM_LABELS, ClinicalConfig, MRConfig, MRPhantom, Tissue, case_seed,
                                     make_mr_phantom, render_mr, render_phantom)
from vox2vec_nnunet.phantoms.anatomy import Subject

SMALL = MRConfig(channels=("T1", "T2"), downsample=3)
SEEDS = [case_seed(0, i) for i in range(4)]


def _eroded(p: MRPhantom, label: str) -> np.ndarray:
    return ndimage.binary_erosion(p.labels == PHANTOM_LABELS[label])


@pytest.fixture(scope="module")
def phantoms() -> list[MRPhantom]:
    return [make_mr_phantom(seed, SMALL) for seed in SEEDS]


def test_labels_are_the_ct_phantoms(phantoms: list[MRPhantom]) -> None:
    for seed, p in zip(SEEDS[:2], phantoms):
        ct = render_phantom(seed, SMALL.case_geometry(seed))
        np.testing.assert_array_equal(p.labels, ct.labels)
        assert set(np.unique(p.labels)) == set(PHANTOM_LABELS.values())
    again = make_mr_phantom(SEEDS[0], SMALL)
    for channel in SMALL.channels:
        np.testing.assert_array_equal(again.images[channel], phantoms[0].images[channel])


def test_no_hounsfield_units_rician_background(phantoms: list[MRPhantom]) -> None:
    for seed, p in zip(SEEDS, phantoms):
        scan = SMALL.scan(seed)
        for image in p.images.values():
            assert image.dtype == np.float32 and image.min() >= 0.0  # a magnitude: never negative
            corner = image[:, :4, :4]  # air in front of the body: no signal, only noise
            rayleigh_mean = scan.noise * scan.scale * math.sqrt(math.pi / 2.0)
            assert 0.8 * rayleigh_mean < corner.mean() < 1.2 * rayleigh_mean
            assert np.percentile(image[p.labels > 0], 50) > 5 * corner.mean()


def test_intensity_scale_differs_between_cases(phantoms: list[MRPhantom]) -> None:
    levels = [np.percentile(p.images["T2"][p.labels > 0], 50) for p in phantoms]
    assert max(levels) / min(levels) > 2.0
    scales = [MRConfig().scan(case_seed(1, i)).scale for i in range(20)]
    assert 100.0 <= min(scales) and max(scales) <= 3000.0 and max(scales) / min(scales) > 5.0


def test_bias_field_is_smooth_present_and_bounded() -> None:
    quiet = replace(SMALL, noise=(0.0, 0.0))
    for seed in SEEDS[:2]:
        geometry = quiet.case_geometry(seed)
        biased = render_mr(seed, geometry, quiet.scan(seed)).images["T2"]
        flat = render_mr(seed, geometry, replace(quiet, bias=(0.0, 0.0)).scan(seed)).images["T2"]
        inside = flat > 0.1 * flat.max()
        ratio = biased[inside] / flat[inside]
        assert ratio.max() / ratio.min() > 1.15  # present
        assert math.exp(-2 * 0.17) - 1e-3 < ratio.min() and ratio.max() < math.exp(2 * 0.17) + 1e-3  # bounded
        # With noise: the same tissues are brighter in one half of the body than in the other,
        # by far more than the noise allows.
        scan = SMALL.scan(seed)
        noisy = make_mr_phantom(seed, SMALL).images["T2"][inside] / flat[inside]
        relative_noise = scan.noise * scan.scale / flat[inside]
        left = np.indices(flat.shape)[2][inside] < flat.shape[2] // 2
        means = [noisy[half].mean() for half in (left, ~left)]
        errors = [math.sqrt(np.mean(relative_noise[half] ** 2) / half.sum()) for half in (left, ~left)]
        assert abs(means[0] - means[1]) > 5.0 * sum(errors)


def test_t1_and_t2_contrast_order() -> None:
    clean = replace(SMALL, noise=(0.0, 0.0), bias=(0.0, 0.0))
    for seed in SEEDS[:2]:
        p = make_mr_phantom(seed, clean)
        mean = {(c, label): float(p.images[c][_eroded(p, label)].mean()) for c in p.images
                for label in ("liver", "spleen", "kidney_left", "kidney_right")}
        assert mean["T1", "liver"] > mean["T1", "spleen"]
        assert mean["T2", "spleen"] > mean["T2", "liver"]
        assert min(mean["T2", "kidney_left"], mean["T2", "kidney_right"]) > mean["T2", "liver"]
        for c in ("T1", "T2"):
            assert mean[c, "liver"] > 0.0
    for i in range(10):
        signal = MRConfig(channels=("T1", "T2")).scan(case_seed(2, i)).signal
        assert signal["T1"][Tissue.FAT] > signal["T1"][Tissue.LIVER] > signal["T1"][Tissue.FLUID]
        assert signal["T2"][Tissue.FLUID] > signal["T2"][Tissue.SPLEEN] > signal["T2"][Tissue.LIVER]
        for table in signal.values():
            assert table[Tissue.AIR] == table[Tissue.TABLE] == 0.0
            assert table[Tissue.CORTICAL_BONE] < 0.05 and table[Tissue.LUNG] < 0.05


def test_thick_slices_drawn_per_case() -> None:
    spacings = [MRConfig().case_geometry(case_seed(3, i)).spacing for i in range(12)]
    for z, y, x in spacings:
        assert 4.0 <= z <= 6.0 and 1.2 <= y == x <= 2.0 and z / y >= 2.0
    assert len(set(spacings)) == len(spacings)
    z, y, x = SMALL.case_geometry(SEEDS[0]).spacing
    assert 12.0 <= z <= 18.0 and 3.6 <= y <= 6.0  # downsample 3


def test_two_channel_dataset(tmp_path, capsys) -> None:
    code = phantoms_main(["-d", "986", "-n", "2", "--unlabeled", "1", "--seed", "4", "--modality", "mr",
                          "--channels", "t1", "t2", "--downsample", "3", "--raw", str(tmp_path), "--no_pbar"])
    assert code == 0
    folder = tmp_path / "Dataset986_Phantoms"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T2"} and "CT" not in meta["channel_names"].values()
    assert meta["labels"] == PHANTOM_LABELS and meta["phantoms"]["config_type"] == "MRConfig"
    for i, sub in ((0, "imagesTr"), (1, "imagesTr"), (2, "imagesTs")):
        case = f"phantom_{i:04d}"
        t1, t2 = (sitk.ReadImage(str(folder / sub / f"{case}_{c:04d}.nii.gz")) for c in (0, 1))
        assert t1.GetSize() == t2.GetSize() and t1.GetSpacing() == t2.GetSpacing() and t1.GetOrigin() == t2.GetOrigin()
        z, y, x = meta["phantoms"]["case_geometries"][case]["spacing"]
        assert t1.GetSpacing() == pytest.approx((x, y, z)) and z > 2 * x
        a, b = sitk.GetArrayFromImage(t1), sitk.GetArrayFromImage(t2)
        assert a.dtype == np.float32 and a.min() >= 0 and b.min() >= 0
        background = (slice(None), slice(0, 4), slice(0, 4))
        assert abs(np.corrcoef(a[background].ravel(), b[background].ravel())[0, 1]) < 0.3  # independent noise
        if sub == "imagesTr":
            labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz")))
            assert labels.shape == a.shape
            expected = render_phantom(case_seed(4, i), SMALL.case_geometry(case_seed(4, i))).labels
            np.testing.assert_array_equal(labels, expected)
    assert "MR channels {0: 'T1', 1: 'T2'}" in capsys.readouterr().out


def test_mr_options_are_checked(tmp_path, capsys) -> None:
    base = ["-d", "985", "-n", "1", "--raw", str(tmp_path), "--no_pbar"]
    assert phantoms_main(base + ["--channels", "t1"]) == 1
    assert "--channels applies to --modality mr only" in capsys.readouterr().err
    assert phantoms_main(base + ["--modality", "mr", "--clinical"]) == 1
    assert phantoms_main(base + ["--modality", "mr", "--spacing", "5", "2", "2"]) == 1
    assert phantoms_main(base + ["--modality", "mr", "--channels", "t1", "t1"]) == 1
    assert "distinct contrasts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        phantoms_main(base + ["--modality", "mr", "--channels", "flair"])
    assert not any(tmp_path.iterdir())


def test_tissue_classes_agree_with_labels_and_hu() -> None:
    seed = case_seed(0, 5)
    geometry = ClinicalConfig(downsample=6).case_geometry(seed)
    subject = Subject(seed, geometry)
    expected = {"liver": {Tissue.LIVER}, "spleen": {Tissue.SPLEEN}, "aorta": {Tissue.BLOOD},
                "kidney_left": {Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA},
                "kidney_right": {Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA}}
    seen = set()
    for _ in subject.slabs():
        for label, tissues in expected.items():
            found = set(np.unique(subject.tissues[subject.labels == PHANTOM_LABELS[label]]).tolist())
            assert found <= tissues, label
            seen |= found
        outside = ~subject.body
        assert set(np.unique(subject.tissues[outside]).tolist()) <= {Tissue.AIR, Tissue.TABLE}
        assert np.all(subject.image[subject.tissues == Tissue.AIR] == -1000.0)
        assert np.all(subject.image[subject.tissues == Tissue.FAT] < -50.0)
        assert np.all(subject.image[subject.tissues == Tissue.CORTICAL_BONE] > 400.0)
    assert seen == {Tissue.LIVER, Tissue.SPLEEN, Tissue.BLOOD, Tissue.KIDNEY_CORTEX, Tissue.KIDNEY_MEDULLA}
