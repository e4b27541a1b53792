"""The plans side: template values, the HU window through nnU-Net's CTNormalization, the planner."""
from __future__ import annotations

import json

import numpy as np
import pytest
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
                       "SimpleITKIO", [0, 1, 2], 1, [3.0, 0.8, 0.8], [100, 512, 512])


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
    from vox2vec_nnunet.commands.plan import check_ct_channels, main

    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert main(["-d", "17"]) == 2
    assert "nnUNet_raw is not set" in capsys.readouterr().err
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    assert main(["-d", "123"]) == 2
    assert "dataset '123' was not found" in capsys.readouterr().err
    with pytest.raises(Vox2VecError, match="not named 'CT'"):
        check_ct_channels({"channel_names": {"0": "T2"}}, tmp_path / "dataset.json")
