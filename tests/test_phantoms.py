"""Synthetic abdominal CT phantoms and their nnU-Net raw datasets."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from vox2vec_nnunet.commands.phantoms import main as phantoms_main
from vox2vec_nnunet.phantoms import (PHANTOM_LABELS, Phantom, PhantomConfig, case_seed, make_phantom,
                                     write_nnunet_raw_dataset)

COARSE = PhantomConfig(spacing=(10.0, 5.0, 5.0))
ORGANS = [name for name in PHANTOM_LABELS if name != "background"]


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    """Two subjects at the default spacing and three at a coarse one."""
    return [make_phantom(0), make_phantom(1)] + [make_phantom(s, COARSE) for s in (2, 3, 4)]


def _mm(phantom: Phantom, mask: np.ndarray) -> np.ndarray:
    """Centroid (z, y, x) in mm, in the frame centred on the volume (+x left, +y posterior)."""
    idx = np.argwhere(mask).mean(axis=0)
    return (idx - (np.array(mask.shape) - 1) / 2) * np.array(phantom.spacing)


def _volume_ml(phantom: Phantom, label: str) -> float:
    return float((phantom.labels == PHANTOM_LABELS[label]).sum() * np.prod(phantom.spacing) / 1000.0)


def _body(image: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(s >= -500) for s in image])


def _spine(phantom: Phantom) -> np.ndarray:
    """Bone near the midline (vertebral bodies and posterior elements), from the image."""
    x = (np.arange(phantom.image.shape[2]) - (phantom.image.shape[2] - 1) / 2) * phantom.spacing[2]
    return (phantom.image > 350) & (phantom.labels == 0) & (np.abs(x) < 30)[None, None, :]


def test_phantom_arrays_and_determinism() -> None:
    a, b = make_phantom(7, COARSE), make_phantom(7, COARSE)
    assert a.image.dtype == np.float32 and a.labels.dtype == np.uint8
    assert a.image.shape == a.labels.shape == COARSE.shape == (18, 52, 68)
    assert a.spacing == (10.0, 5.0, 5.0)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert set(np.unique(a.labels)) == set(PHANTOM_LABELS.values())


def test_subjects_vary_between_seeds(phantoms: list[Phantom]) -> None:
    coarse = phantoms[2:]
    for label in ORGANS:
        centroids = [_mm(p, p.labels == PHANTOM_LABELS[label]) for p in coarse]
        volumes = [_volume_ml(p, label) for p in coarse]
        for i in range(len(coarse)):
            for j in range(i + 1, len(coarse)):
                assert (np.linalg.norm(centroids[i] - centroids[j]) > 1.0
                        or abs(volumes[i] - volumes[j]) > 0.02 * volumes[i]), label
    body_widths = [_body(p.image).any(axis=(0, 1)).sum() for p in coarse]
    assert len(set(body_widths)) > 1


def test_same_subject_at_another_spacing(phantoms: list[Phantom]) -> None:
    """The anatomy is drawn in millimetres: one seed is one subject at every spacing."""
    fine, coarse = phantoms[0], make_phantom(0, COARSE)
    for label in ORGANS:
        assert _volume_ml(coarse, label) == pytest.approx(_volume_ml(fine, label), rel=0.25), label
        mask = PHANTOM_LABELS[label]
        assert np.linalg.norm(_mm(coarse, coarse.labels == mask) - _mm(fine, fine.labels == mask)) < 6.0, label


# Plausible organ volumes (ml) within the 180 mm field of view.
VOLUME_RANGES = {"liver": (400, 2500), "spleen": (40, 450), "kidney_left": (40, 300),
                 "kidney_right": (40, 300), "aorta": (15, 150)}


@pytest.mark.parametrize("index", range(5))
def test_labels_match_anatomy(phantoms: list[Phantom], index: int) -> None:
    p = phantoms[index]
    for label, (low, high) in VOLUME_RANGES.items():
        assert low < _volume_ml(p, label) < high, (label, _volume_ml(p, label))
    spine = _mm(p, _spine(p))
    centroid = {label: _mm(p, p.labels == PHANTOM_LABELS[label]) for label in ORGANS}
    # Array x increases to the patient's left (LPS): the liver is on the right, the spleen left.
    assert centroid["liver"][2] < spine[2] - 20
    assert centroid["spleen"][2] > spine[2] + 40
    assert centroid["kidney_left"][2] > spine[2] + 30
    assert centroid["kidney_right"][2] < spine[2] - 30
    # Array y increases posteriorly: the aorta lies in front of the vertebral column, which
    # lies behind the middle of the body.
    assert centroid["aorta"][1] < spine[1] - 15
    assert abs(centroid["aorta"][2] - spine[2]) < 25
    assert spine[1] > _mm(p, _body(p.image))[1]
    # The kidneys sit beside the spine, the right one usually lower (no strict order).
    for side in ("kidney_left", "kidney_right"):
        assert abs(centroid[side][1] - spine[1]) < 40
    # Slice axis increases cranially: lungs fill the top slices and are absent low down
    # (bowel gas is the only air below).
    body = _body(p.image)
    air = (p.image < -600) & body
    fraction = air.sum(axis=(1, 2)) / body.sum(axis=(1, 2))
    assert fraction[-1] > 0.2
    assert fraction[: len(fraction) // 2].max() < 0.06
    assert centroid["liver"][0] > _mm(p, p.labels == PHANTOM_LABELS["kidney_right"])[0]


def test_intensities_are_ct_like(phantoms: list[Phantom]) -> None:
    p = phantoms[0]
    body = _body(p.image)
    outside = p.image[~ndimage.binary_dilation(body, iterations=2)]
    assert abs(outside.mean() + 1000) < 5 and outside.min() >= -1024
    median = {label: float(np.median(p.image[ndimage.binary_erosion(p.labels == v)]))
              for label, v in PHANTOM_LABELS.items() if v}
    assert 40 < median["liver"] < 80 and 40 < median["spleen"] < 80
    assert 140 < median["aorta"] < 260
    for kidney in ("kidney_left", "kidney_right"):  # enhancing cortex; the medulla may be darker
        assert 140 < np.percentile(p.image[p.labels == PHANTOM_LABELS[kidney]], 90) < 280
    assert p.image[_spine(p)].max() > 600  # cortical bone
    top = p.image[-1][(p.image[-1] < -600) & body[-1]]
    assert -900 < np.median(top) < -800  # lung
    soft = p.image[body & (p.labels == 0)]
    assert np.mean((soft > -150) & (soft < -50)) > 0.1  # fat


@pytest.mark.parametrize("index", range(3))
def test_liver_and_spleen_not_separable_by_intensity(phantoms: list[Phantom], index: int) -> None:
    """Same parenchyma value per subject: only position and context tell them apart."""
    p = phantoms[index]
    liver = p.image[ndimage.binary_erosion(p.labels == PHANTOM_LABELS["liver"])]
    spleen = p.image[ndimage.binary_erosion(p.labels == PHANTOM_LABELS["spleen"])]
    noise = 0.5 * (liver.std() + spleen.std())
    assert abs(liver.mean() - spleen.mean()) < noise
    thresholds = np.linspace(min(liver.min(), spleen.min()), max(liver.max(), spleen.max()), 200)
    best = max(max(np.mean(liver > t) + np.mean(spleen <= t), np.mean(liver <= t) + np.mean(spleen > t)) / 2
               for t in thresholds)
    assert best < 0.7  # the best intensity threshold barely beats chance
    kidney_l = p.image[p.labels == PHANTOM_LABELS["kidney_left"]].mean()
    kidney_r = p.image[p.labels == PHANTOM_LABELS["kidney_right"]].mean()
    assert abs(kidney_l - kidney_r) < noise


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fov_mm"):
        PhantomConfig(fov_mm=(180.0, 200.0, 340.0))
    with pytest.raises(ValueError, match="spacing"):
        PhantomConfig(spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="seed"):
        make_phantom(-1)
    with pytest.raises(ValueError, match="dataset_id"):
        write_nnunet_raw_dataset(tmp_path, 1000, "X", 1, config=COARSE)
    with pytest.raises(ValueError, match="name"):
        write_nnunet_raw_dataset(tmp_path, 1, "a b", 1, config=COARSE)


def test_overwrite_and_id_clash(tmp_path: Path) -> None:
    folder = write_nnunet_raw_dataset(tmp_path, 12, "A", 1, config=COARSE, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_nnunet_raw_dataset(tmp_path, 12, "A", 1, config=COARSE, progress=False)
    (folder / "stale.txt").write_text("x")
    write_nnunet_raw_dataset(tmp_path, 12, "A", 2, config=COARSE, progress=False, overwrite=True)
    assert not (folder / "stale.txt").exists() and len(list((folder / "labelsTr").iterdir())) == 2
    with pytest.raises(FileExistsError, match="Dataset012_A"):
        write_nnunet_raw_dataset(tmp_path, 12, "B", 1, config=COARSE, progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset012_A"]


def test_command_needs_a_raw_folder(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert phantoms_main(["-d", "5", "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "nnUNet_raw" in err and "--raw" in err


def test_written_dataset_is_a_valid_nnunet_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    raw, preprocessed, results = tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results"
    monkeypatch.setenv("nnUNet_raw", str(raw))
    code = phantoms_main(["-d", "987", "-n", "3", "--unlabeled", "1", "--seed", "5", "--name", "Tiny",
                          "--spacing", "10", "5", "5", "-np", "2", "--no_pbar"])
    assert code == 0
    folder = raw / "Dataset987_Tiny"
    assert str(folder) in capsys.readouterr().out
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["labels"] == PHANTOM_LABELS
    assert meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    cases = [f"phantom_{i:04d}" for i in range(4)]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in cases[:3]]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in cases[:3]]
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [f"{cases[3]}_0000.nii.gz"]
    assert not list(raw.glob(".*"))  # no staging folder left behind

    # Geometry on disk: SimpleITK spacing is (x, y, z); identity direction means LPS.
    phantom = make_phantom(case_seed(5, 3), COARSE)
    assert meta["phantoms"]["case_seeds"][cases[3]] == case_seed(5, 3)
    image = sitk.ReadImage(str(folder / "imagesTs" / f"{cases[3]}_0000.nii.gz"))
    assert image.GetSpacing() == (5.0, 5.0, 10.0) and image.GetSize() == (68, 52, 18)
    assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert image.GetOrigin() == pytest.approx(phantom.origin_lps)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), np.rint(phantom.image).astype(np.int16))
    labels = sitk.ReadImage(str(folder / "labelsTr" / f"{cases[0]}.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), make_phantom(case_seed(5, 0), COARSE).labels)

    command = shutil.which("nnUNetv2_plan_and_preprocess")
    assert command is not None, "nnUNetv2_plan_and_preprocess is not on PATH"
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results)}
    run = subprocess.run([command, "-d", "987", "--verify_dataset_integrity", "-c", "3d_fullres",
                          "-np", "1", "-npfp", "1", "--no_pbar"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "verify_dataset_integrity Done" in run.stdout
    plans = json.loads((preprocessed / "Dataset987_Tiny" / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["spacing"] == [10.0, 5.0, 5.0]
    assert len(list((preprocessed / "Dataset987_Tiny" / "nnUNetPlans_3d_fullres").glob("*_seg.b2nd"))) == 3
