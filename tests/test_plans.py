"""The plans side: template values, the HU window through nnU-Net's CTNormalization, the planner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from vox2vec_nnunet.errors import Vox2VecError
from vox2vec_nnunet.network.segmentation import Vox2VecSegmentationNetwork
from vox2vec_nnunet_plans.builder import (PRETRAINING_CONFIGURATION, SEGMENTATION_CONFIGURATION, build_plans,
                                          default_settings, slice_axis_first)


def paper_plans() -> dict:
    return build_plans("Dataset017_X", "Vox2VecPlans",
                       {SEGMENTATION_CONFIGURATION: default_settings(SEGMENTATION_CONFIGURATION),
                        PRETRAINING_CONFIGURATION: default_settings(PRETRAINING_CONFIGURATION)},
                       "SimpleITKIO", [0, 1, 2], ["CT"], [3.0, 0.8, 0.8], [100, 512, 512])


def test_segmentation_configuration_holds_the_paper_settings():
    cfg = paper_plans()["configurations"][SEGMENTATION_CONFIGURATION]
    assert cfg["spacing"] == [2.0, 1.0, 1.0]  # slice axis first: the paper's 1 x 1 x 2 mm
    assert cfg["patch_size"] == [32, 128, 128]
    assert cfg["batch_size"] == 7
    assert cfg["normalization_schemes"] == ["CTNormalization"]
    assert cfg["median_image_size_in_voxels"] == [150.0, 410.0, 410.0]
    arch = cfg["architecture"]
    assert arch["network_class_name"] == "vox2vec_nnunet.network.segmentation.Vox2VecSegmentationNetwork"
    assert arch["arch_kwargs"]["head"] == "nonlinear"
    assert (arch["arch_kwargs"]["base_channels"], arch["arch_kwargs"]["num_levels"]) == (16, 6)
    assert json.loads(json.dumps(paper_plans())) == paper_plans()  # plain JSON


def test_pretraining_configuration_keeps_hounsfield_units():
    cfg = paper_plans()["configurations"][PRETRAINING_CONFIGURATION]
    assert cfg["normalization_schemes"] == ["NoNormalization"]
    assert cfg["batch_size"] == 10 and cfg["patch_size"] == [32, 128, 128]


def test_pretraining_data_is_resampled_linearly_in_float32():
    """Pre-training images: nnU-Net's torch resampling (linear, float32, as the reference's
    order-1 zoom); segmentation data keeps nnU-Net's default cubic spline."""
    manager = PlansManager(paper_plans())
    pretraining = manager.get_configuration(PRETRAINING_CONFIGURATION)
    assert pretraining.configuration["resampling_fn_data"] == "resample_torch_fornnunet"
    assert pretraining.configuration["resampling_fn_seg"] == "no_resampling_hack"
    segmentation = manager.get_configuration(SEGMENTATION_CONFIGURATION)
    assert segmentation.configuration["resampling_fn_data_kwargs"]["order"] == 3
    image = np.arange(4 * 6 * 6, dtype=np.float32).reshape(1, 4, 6, 6)  # linear in every axis
    resampled = pretraining.resampling_fn_data(image, [2, 3, 3], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert resampled.dtype == np.float32 and resampled.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(resampled[0, :, 1, 1], image[0, [0, 2], 2, 2] + 0.5 * (36 + 6 + 1))


def test_nnunet_builds_our_network_from_the_plans():
    manager = PlansManager(paper_plans())
    configuration = manager.get_configuration(SEGMENTATION_CONFIGURATION)
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    net = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                 configuration.network_arch_init_kwargs_req_import, 1, 14, allow_init=True,
                                 deep_supervision=False)
    assert isinstance(net, Vox2VecSegmentationNetwork)
    assert sum(p.numel() for p in net.backbone.parameters()) == 47_624_448


def test_ct_normalization_with_the_plans_properties_is_the_fixed_hu_window():
    properties = paper_plans()["foreground_intensity_properties_per_channel"]["0"]
    hu = np.linspace(-3000, 3000, 1001, dtype=np.float32)[None, None]
    normalized = CTNormalization(intensityproperties=properties).run(hu.copy())
    expected = (np.clip(hu, -1350, 1000) + 1350) / 2350
    np.testing.assert_allclose(normalized, expected, atol=1e-6)
    assert normalized.min() == 0.0 and normalized.max() == pytest.approx(1.0)


def test_overrides_and_their_validation():
    settings = default_settings(SEGMENTATION_CONFIGURATION).with_overrides(
        spacing=[4, 2, 2], patch_size=[8, 16, 16], batch_size=2, base_channels=4, num_levels=3)
    assert settings.spacing == (4.0, 2.0, 2.0) and settings.patch_size == (8, 16, 16)
    assert (settings.batch_size, settings.base_channels, settings.num_levels) == (2, 4, 3)
    with pytest.raises(ValueError, match="patch size"):
        settings.with_overrides(patch_size=[0, 16, 16])
    with pytest.raises(ValueError, match="spacing"):
        settings.with_overrides(spacing=[-1, 1, 1])


@pytest.mark.parametrize("spacing, expected", [((3.0, 0.8, 0.8), [0, 1, 2]), ((0.8, 0.8, 3.0), [2, 0, 1]),
                                               ((1.0, 1.0, 1.0), [0, 1, 2]), ((0.625, 0.72, 0.72), [0, 1, 2]),
                                               ((0.5, 0.98, 0.98), [0, 1, 2]), ((0.7, 2.5, 0.7), [1, 0, 2])])
def test_slice_axis_goes_first(spacing, expected):
    assert slice_axis_first(spacing) == expected


def test_plan_command_errors_name_the_problem(tmp_path, monkeypatch, capsys):
    from vox2vec_nnunet.commands.plan import main

    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert main(["-d", "17"]) == 2
    assert "nnUNet_raw is not set" in capsys.readouterr().err
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    assert main(["-d", "123"]) == 2
    assert "dataset '123' was not found" in capsys.readouterr().err


def test_each_channel_gets_the_hu_window_if_ct_else_nnunets_normalization():
    """CT: the HU window (segmentation) or HU kept (pre-training); any other name: what nnU-Net's
    get_normalization_scheme chooses, with the caller's use_mask_for_norm and fingerprint properties."""
    names = ["T2", "CT", "ADC", "noNorm", "zscore"]
    fingerprint = {str(c): {"mean": 10.0 * c, "std": 2.0} for c in range(len(names))}
    plans = build_plans("Dataset017_X", "Vox2VecPlans",
                        {SEGMENTATION_CONFIGURATION: default_settings(SEGMENTATION_CONFIGURATION),
                         PRETRAINING_CONFIGURATION: default_settings(PRETRAINING_CONFIGURATION)},
                        "SimpleITKIO", [0, 1, 2], names, [3.0, 0.8, 0.8], [100, 512, 512],
                        use_mask_for_norm=[True, False, True, False, False], intensity_properties=fingerprint)
    segmentation = plans["configurations"][SEGMENTATION_CONFIGURATION]
    assert segmentation["normalization_schemes"] == ["ZScoreNormalization", "CTNormalization", "ZScoreNormalization",
                                                     "NoNormalization", "ZScoreNormalization"]
    assert segmentation["use_mask_for_norm"] == [True, False, True, False, False]
    assert plans["configurations"][PRETRAINING_CONFIGURATION]["normalization_schemes"][:3] == [
        "ZScoreNormalization", "NoNormalization", "ZScoreNormalization"]
    properties = plans["foreground_intensity_properties_per_channel"]
    assert properties["1"] == paper_plans()["foreground_intensity_properties_per_channel"]["0"]  # the window
    assert properties["0"] == fingerprint["0"] and properties["2"] == fingerprint["2"]
    assert json.loads(json.dumps(plans)) == plans
    with pytest.raises(ValueError, match="one value per channel"):
        build_plans("Dataset017_X", "Vox2VecPlans", {}, "SimpleITKIO", [0, 1, 2], names, [1, 1, 1], [9, 9, 9],
                    use_mask_for_norm=[True])


def test_the_network_takes_the_datasets_channels():
    manager = PlansManager(build_plans("Dataset017_X", "Vox2VecPlans",
                                       {SEGMENTATION_CONFIGURATION: default_settings(SEGMENTATION_CONFIGURATION)},
                                       "SimpleITKIO", [0, 1, 2], ["T2", "ADC"], [3.0, 0.8, 0.8], [10, 64, 64]))
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    configuration = manager.get_configuration(SEGMENTATION_CONFIGURATION)
    channels = determine_num_input_channels(manager, configuration, {"channel_names": {"0": "T2", "1": "ADC"},
                                                                     "labels": {"background": 0, "a": 1}})
    net = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                 configuration.network_arch_init_kwargs_req_import, channels, 2, allow_init=True,
                                 deep_supervision=False)
    assert channels == 2 and net.backbone.first_conv.in_channels == 2
    assert net(torch.zeros(2, 2, 32, 32, 32)).shape == (2, 2, 32, 32, 32)


@pytest.mark.parametrize("relative_size, masked", [(0.5, True), (0.9, False)])
def test_the_planner_decides_use_mask_for_norm_as_nnunets(tmp_path, monkeypatch, relative_size, masked):
    """nnU-Net's own planner method on the fingerprint: z-scored channels inside the nonzero mask
    when cropping to it shrinks the median case below 3/4; a CT channel never."""
    from mr_volumes import write_raw_dataset

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    image = np.zeros((4, 8, 8), np.float32)
    write_raw_dataset(tmp_path / "nnUNet_raw", 17, "X", {"0": "T1", "1": "CT", "2": "FLAIR"},
                      {"case": [image, image - 1000, image]}, {"case": image.astype(np.uint8)})
    (tmp_path / "nnUNet_preprocessed" / "Dataset017_X").mkdir()
    fingerprint = {"spacings": [[4.0, 1.5, 1.5]], "shapes_after_crop": [[4, 8, 8]],
                   "median_relative_size_after_cropping": relative_size,
                   "foreground_intensity_properties_per_channel": {
                       str(c): {"mean": 1.0, "std": 1.0, "percentile_00_5": 0.0, "percentile_99_5": 2.0, "min": 0.0,
                                "max": 2.0, "median": 1.0} for c in range(3)}}
    (tmp_path / "nnUNet_preprocessed" / "Dataset017_X" / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    from vox2vec_nnunet_plans.planner import Vox2VecPlanner

    plans = Vox2VecPlanner("Dataset017_X").plan_experiment()
    configuration = plans["configurations"][SEGMENTATION_CONFIGURATION]
    assert configuration["normalization_schemes"] == ["ZScoreNormalization", "CTNormalization", "ZScoreNormalization"]
    assert configuration["use_mask_for_norm"] == [masked, False, masked]
    assert plans["foreground_intensity_properties_per_channel"]["0"] == fingerprint[
        "foreground_intensity_properties_per_channel"]["0"]


def test_a_ct_channel_that_is_not_in_hounsfield_units_is_refused(tmp_path):
    """0..4095 (no rescale intercept): no air near -1000 HU, so the plan command refuses it,
    naming the file; a CT in HU and an MR channel pass."""
    from mr_volumes import write_raw_dataset

    from vox2vec_nnunet.commands.plan import check_hounsfield_units

    rng = np.random.default_rng(0)
    hu = rng.uniform(-1024, 3071, (4, 8, 8)).astype(np.float32)
    hu[0, 0, 0] = -1024.0
    mr = rng.uniform(0, 4095, (4, 8, 8)).astype(np.float32)
    channels = {"0": "T2", "1": "CT"}
    labels = {"case": np.zeros((4, 8, 8), np.uint8)}
    good = write_raw_dataset(tmp_path, 1, "Good", channels, {"case": [mr, hu]}, labels)
    check_hounsfield_units(good, json.loads((good / "dataset.json").read_text()), channels)
    bad = write_raw_dataset(tmp_path, 2, "Bad", channels, {"case": [mr, hu + 1024]}, labels)
    with pytest.raises(Vox2VecError, match="case_0001.nii.gz.*channel 1.*not Hounsfield units: the lowest is 0"):
        check_hounsfield_units(bad, json.loads((bad / "dataset.json").read_text()), channels)
