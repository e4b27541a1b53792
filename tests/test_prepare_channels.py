"""Pre-training data from any modality: channel sets, z-scoring as nnU-Net does, unit-free body
masks, and bad scans reported and skipped (real nnU-Net preprocessing, in process)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from mr_volumes import SPACING, dice, mr_volume, write_raw_dataset
from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.pretraining.prepare import (CaseTask, fpn_preprocessing, nonzero_crop_fraction,
                                                prepare_pretraining_dataset, pretraining_channels,
                                                tasks_from_folder, tasks_from_raw_dataset, write_dataset_files)
from vox2vec_nnunet_plans.builder import PRETRAINING_CONFIGURATION, default_settings

SETTINGS = default_settings(PRETRAINING_CONFIGURATION).with_overrides(spacing=SPACING, patch_size=[4, 16, 16],
                                                                        base_channels=4, num_levels=3)


def _task(source: str, *names: str) -> CaseTask:
    return CaseTask(f"{source}_case", tuple(f"{source}_{c}.nii.gz" for c in range(len(names))), source, names)


def test_one_channel_set_per_pretraining_dataset():
    assert pretraining_channels([_task("a", "T2", "ADC"), _task("b", "t2", "adc")]) == ("T2", "ADC")
    assert pretraining_channels([_task("a", "CT"), _task("b", "CT")]) == ("CT",)
    assert pretraining_channels([_task("a", "T1"), _task("b", "T2"), _task("c", "FLAIR")]) == ("FLAIR+T1+T2",)
    with pytest.raises(Vox2VecError, match=r"different channels \(\['CT'\] from a; \['T2'\] from b\).*not mixed"):
        pretraining_channels([_task("a", "CT"), _task("b", "T2")])
    with pytest.raises(Vox2VecError, match="different channels"):
        pretraining_channels([_task("a", "T2", "ADC"), _task("b", "T2")])
    with pytest.raises(Vox2VecError, match="'rescale_to_0_1', which nnU-Net normalises with RescaleTo01Normalization"):
        pretraining_channels([_task("a", "rescale_to_0_1")])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 2-channel MR raw dataset (T2-like and T1-like contrasts of one trunk) with one case whose
    channels disagree in shape, and a folder of 'CT' scans, one in HU and one stored 0..4095."""
    root = tmp_path_factory.mktemp("mr")
    cases = {}
    for seed in range(2):
        t1, body, _ = mr_volume(seed=seed, contrast="T1")
        t2, _, _ = mr_volume(seed=seed, contrast="T2", scale=50.0)
        cases[f"mr{seed}"] = [t2, t1]
    cases["broken"] = [cases["mr0"][0], cases["mr0"][1][:, :-2]]
    raw = write_raw_dataset(root / "raw", 31, "MR", {"0": "T2", "1": "T1"}, cases)
    tasks = tasks_from_raw_dataset(raw)
    preprocessing = fpn_preprocessing(SETTINGS, "Vox2VecPlans", pretraining_channels(tasks))
    results = prepare_pretraining_dataset(tasks, root / "pre", preprocessing, 1, num_positions=64)
    write_dataset_files(root / "raw_out", root / "pre", preprocessing, results, 64)
    return {"root": root, "raw": raw, "cases": cases, "tasks": tasks, "results": {r.identifier: r for r in results},
            "data": root / "pre" / preprocessing.data_identifier, "preprocessing": preprocessing}


def test_every_channel_of_a_raw_dataset_is_read(prepared):
    task = next(t for t in prepared["tasks"] if t.identifier == "Dataset031_mr0")
    assert task.channel_names == ("T2", "T1") and [f.split("/")[-1] for f in task.image_files] == [
        "mr0_0000.nii.gz", "mr0_0001.nii.gz"]
    assert task.source == "Dataset031_MR/imagesTs"
    assert prepared["preprocessing"].entry["normalization_schemes"] == ["ZScoreNormalization"] * 2


def test_a_scan_whose_channels_disagree_in_shape_is_skipped_with_its_name(prepared):
    result = prepared["results"]["Dataset031_broken"]
    assert result.status == "skipped" and result.image_file.endswith("broken_0000.nii.gz")
    assert result.reason == "its channels disagree in shape: broken_0000.nii.gz (14, 72, 84), broken_0001.nii.gz " \
                            "(14, 70, 84)"
    assert [prepared["results"][f"Dataset031_mr{s}"].status for s in range(2)] == ["done", "done"]


def test_mr_channels_are_z_scored_as_nnunet_does_and_share_one_body_mask(prepared):
    """The stored channels are nnU-Net's ZScoreNormalization of the scan (the plans' spacing is the
    scan's: no resampling), cropped to the body found on channel 0; the body mask is the true one."""
    dataset = nnUNetDatasetBlosc2(str(prepared["data"]))
    for seed in range(2):
        key = f"Dataset031_mr{seed}"
        data, seg, _, properties = dataset.load_case(key)
        data, seg = np.asarray(data), np.asarray(seg)
        image = np.stack(prepared["cases"][f"mr{seed}"])
        assert properties["vox2vec_use_mask_for_norm"] == [False, False]
        cropped, nonzero, _ = crop_to_nonzero(image.copy())
        expected = np.stack([ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}).run(c.copy())
                             for c in cropped])
        box = tuple(slice(a, b) for a, b in properties["vox2vec_crop"])
        np.testing.assert_allclose(data, expected[(slice(None), *box)], atol=2e-5)
        _, body, _ = mr_volume(seed=seed)
        body = body[tuple(slice(a, b) for a, b in properties["bbox_used_for_cropping"])][box]
        assert seg.shape == (1, *data.shape[1:]) and dice(seg[0] == 1, body) > 0.999
        assert properties["vox2vec_body_voxels"] == int(seg.sum())


def test_the_prepared_dataset_records_its_channels(prepared):
    import json

    dataset_json = json.loads((prepared["root"] / "pre" / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "T2", "1": "T1"}
    plans = json.loads((prepared["root"] / "pre" / "Vox2VecPlans.json").read_text())
    assert plans["configurations"][PRETRAINING_CONFIGURATION]["normalization_schemes"] == ["ZScoreNormalization"] * 2
    report = json.loads((prepared["root"] / "pre" / "vox2vec_preparation_report.json").read_text())
    assert report["settings"]["channel_names"] == ["T2", "T1"]


def test_use_mask_for_norm_follows_nnunets_rule_per_scan(tmp_path):
    """A scan that the crop to its nonzero region shrinks below 3/4 (a skull-stripped-like MR) is
    z-scored inside the nonzero mask; its body is that region, dark tissue cut by its border (the
    lungs here) included."""
    image, _, _ = mr_volume(seed=0)
    stripped = np.zeros_like(image)
    stripped[:, 20:50, 25:60] = image[:, 20:50, 25:60]
    assert nonzero_crop_fraction(stripped[None]) < 0.75 < nonzero_crop_fraction(image[None])
    folder = tmp_path / "t2"
    write_raw_dataset(tmp_path, 40, "X", {"0": "T2"}, {"s": [stripped]})
    folder.mkdir()
    (tmp_path / "Dataset040_X" / "imagesTs" / "s_0000.nii.gz").rename(folder / "s.nii.gz")
    tasks = tasks_from_folder(folder, "T2")
    preprocessing = fpn_preprocessing(SETTINGS, "Vox2VecPlans", pretraining_channels(tasks))
    (result,) = prepare_pretraining_dataset(tasks, tmp_path / "pre", preprocessing, 1, num_positions=64)
    assert result.status == "done"
    case = tmp_path / "pre" / preprocessing.data_identifier / "t2_s"
    properties = pickle.loads(case.with_suffix(".pkl").read_bytes())
    assert properties["vox2vec_use_mask_for_norm"] == [True]
    data, seg, _, _ = nnUNetDatasetBlosc2(str(case.parent)).load_case("t2_s")
    inside = stripped[:, 20:50, 25:60]
    np.testing.assert_allclose(np.asarray(data)[0], (inside - inside.mean()) / inside.std(), atol=2e-5)
    assert np.asarray(seg).all()


def test_a_ct_that_is_not_in_hounsfield_units_is_skipped_with_the_reason(tmp_path):
    from mr_volumes import write_raw_dataset as write

    rng = np.random.default_rng(0)
    _, y, x = np.indices((6, 30, 30))
    hu = np.where(((y - 15) / 12) ** 2 + ((x - 15) / 11) ** 2 <= 1, 40.0, -1000.0) + rng.normal(0, 5, (6, 30, 30))
    raw = write(tmp_path, 50, "CT", {"0": "CT"}, {"hu": [hu.astype(np.float32)],
                                                   "stored": [(hu + 1024).astype(np.float32)]})
    tasks = tasks_from_raw_dataset(raw)
    preprocessing = fpn_preprocessing(SETTINGS, "Vox2VecPlans", pretraining_channels(tasks))
    results = {r.identifier: r for r in prepare_pretraining_dataset(tasks, tmp_path / "pre", preprocessing, 1, 64)}
    assert results["Dataset050_hu"].status == "done"
    skipped = results["Dataset050_stored"]
    assert skipped.status == "skipped" and "stored_0000.nii.gz" in skipped.reason
    assert "named CT but its values are not Hounsfield units: the lowest is" in skipped.reason
