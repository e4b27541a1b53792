"""vox2vec on nnU-Net's own U-Nets: read-out, feature maps, weight names (network/unet.py)."""
from __future__ import annotations

import pytest
import torch
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from unet_plans import TINY_PLAIN, TINY_RESENC, unet_plans
from vox2vec_nnunet.loss import info_nce
from vox2vec_nnunet.network.unet import Vox2VecUNet, strided_voxel_representations


def build_unet(architecture: dict, num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    """The network nnUNetv2_train builds for the plans (nnUNetTrainer.build_network_architecture)."""
    manager = PlansManager(unet_plans("Dataset501_Phantoms", architecture))
    torch.manual_seed(seed)
    return nnUNetTrainer.build_network_architecture(manager, manager.get_configuration("3d_fullres"), 1, num_classes,
                                                    enable_deep_supervision=True)


def dense_reference(maps: list[torch.Tensor], strides, positions: torch.Tensor) -> torch.Tensor:
    """Every map upsampled to full resolution by repeating each cell stride times, then indexed."""
    full = []
    for fmap, stride in zip(maps, strides):
        up = fmap
        for axis, s in zip((2, 3, 4), stride):
            up = torch.repeat_interleave(up, s, dim=axis)
        full.append(up)
    b, z, y, x = positions.unbind(1)
    return torch.cat([f[b, :, z, y, x] for f in full], dim=1)


def test_strided_read_out_matches_a_dense_reference_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    strides = [(1, 1, 1), (2, 2, 2), (2, 4, 4), (4, 8, 8)]
    shape = (8, 16, 24)
    maps = [torch.randn(2, c, *(n // s for n, s in zip(shape, st)), generator=g, dtype=torch.float64,
                        requires_grad=True) for c, st in zip((3, 4, 5, 6), strides)]
    positions = torch.stack([torch.randint(0, n, (50,), generator=g) for n in (2, *shape)], dim=1)
    ours = strided_voxel_representations(maps, strides, positions)
    reference = dense_reference(maps, strides, positions)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    weights = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((ours * weights).sum(), maps)
    reference_grads = torch.autograd.grad((reference * weights).sum(), maps)
    for a, b in zip(grads, reference_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("architecture", [TINY_RESENC, TINY_PLAIN], ids=["ResidualEncoderUNet", "PlainConvUNet"])
def test_levels_are_the_decoder_stage_outputs_and_the_bottleneck(architecture):
    unet = build_unet(architecture)
    model = Vox2VecUNet(unet)
    kwargs = architecture["arch_kwargs"]
    assert model.level_channels == kwargs["features_per_stage"]
    strides = [[1, 1, 1]]
    for s in kwargs["strides"][1:]:
        strides.append([a * b for a, b in zip(strides[-1], s)])
    assert [list(s) for s in model.level_strides] == strides
    x = torch.randn(2, 1, 12, 20, 24)
    seg_inputs = []
    model.decoder.seg_layers[-1].register_forward_hook(lambda m, i, o: seg_inputs.append(i[0]))
    with torch.no_grad():
        maps = model.feature_maps(x)
        bottleneck = model.encoder(x)[-1]
    assert [m.shape[1] for m in maps] == model.level_channels
    assert [tuple(m.shape[2:]) for m in maps] == [tuple(n // s for n, s in zip((12, 20, 24), st)) for st in strides]
    torch.testing.assert_close(maps[0], seg_inputs[0])  # what nnU-Net's segmentation layer reads
    torch.testing.assert_close(maps[-1], bottleneck)
    assert len(model.feature_maps(x)) == len(maps)  # the hooks keep nothing between calls


def test_pretraining_weights_load_into_the_segmentation_network_with_nnunets_loader(tmp_path):
    """Same names and shapes as nnU-Net's network; every tensor but the segmentation layers arrives."""
    model = Vox2VecUNet(build_unet(TINY_RESENC, num_classes=2, seed=1))
    weights = model.state_dict()
    segmentation = build_unet(TINY_RESENC, num_classes=5, seed=2)
    unet_keys = set(segmentation.state_dict())
    assert set(weights) - unet_keys == {k for k in weights if k.startswith("projector.")}
    assert unet_keys <= set(weights)
    checkpoint = tmp_path / "pretrained.pth"
    torch.save({"network_weights": weights}, checkpoint)
    load_pretrained_weights(segmentation, str(checkpoint))
    loaded = segmentation.state_dict()
    non_head = [k for k in loaded if ".seg_layers." not in k]
    assert non_head and all(torch.equal(loaded[k], weights[k]) for k in non_head)
    assert all(loaded[k].shape[0] == 5 for k in loaded if ".seg_layers." in k)


def test_a_step_trains_every_stage_read_out_and_not_the_segmentation_layers():
    model = Vox2VecUNet(build_unet(TINY_RESENC))
    g = torch.Generator().manual_seed(0)
    patches = torch.randn(4, 1, 12, 20, 24, generator=g)
    positions = torch.stack([torch.randint(0, n, (64,), generator=g) for n in (2, 12, 20, 24)], dim=1)
    second = positions.clone()
    second[:, 0] += 2
    z1, z2 = model(patches, torch.cat([positions, second])).chunk(2)
    assert z1.shape == (64, 128)
    torch.testing.assert_close(z1.norm(dim=1), torch.ones(64))
    info_nce(z1, z2, 0.1).backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert all(grads[k] is None for k in grads if ".seg_layers." in k)
    reached = {k for k, v in grads.items() if v is not None and v.abs().sum() > 0}
    # nnU-Net starts each residual branch's last norm at zero (init_last_bn_before_add_to_0): the
    # branch is closed and its convolutions get no gradient yet, but the gate opening it does
    gates = [k for k in grads if k.endswith("conv2.norm.weight")]
    assert gates and set(gates) <= reached
    gated = {k for k in grads if ".blocks." in k and (".conv1." in k or ".conv2.conv." in k)}
    assert set(grads) - gated - {k for k in grads if ".seg_layers." in k} <= reached
    assert any(k.startswith("decoder.stages.0.") for k in reached) and any(k.startswith("encoder.stem.") for k in reached)


def test_refuses_a_network_that_is_not_a_unet():
    with pytest.raises(ValueError, match="not a U-Net of dynamic-network-architectures"):
        Vox2VecUNet(torch.nn.Conv3d(1, 2, 3))


def test_augmentation_for_ct_normalization_ends_where_nnunets_ct_normalization_ends():
    """Without a random window the patch equals nnU-Net's CTNormalization of the same HU; random
    windows stay inside the plans' window and span the same output range."""
    import numpy as np
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    from unet_plans import CT_PROPERTIES
    from vox2vec_nnunet.pretraining.augmentation import IntensityAugmentation

    props = CT_PROPERTIES["0"]
    hu = torch.linspace(-1100, 1400, 2 * 6 * 10 * 10, dtype=torch.float64).reshape(2, 1, 6, 10, 10)
    plain = IntensityAugmentation(filter_p=0.0, noise_p=0.0, window_p=0.0).for_ct_normalization(props)
    ours = plain(hu.float(), [1, 2]).double()
    reference = CTNormalization(intensityproperties=props).run(hu.numpy().copy())
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-5, atol=1e-5)

    matched = IntensityAugmentation().for_ct_normalization(props)
    low, high = props["percentile_00_5"], props["percentile_99_5"]
    assert matched.fixed_window_hu == (low, high)
    assert low == matched.window_low_hu[0] < matched.window_low_hu[1] < matched.window_high_hu[0]
    assert matched.window_high_hu[1] == pytest.approx(high)
    params = matched.sample_parameters([torch.Generator().manual_seed(s) for s in range(200)], "cpu")
    assert (params.window_low_hu >= low).all() and (params.window_high_hu <= high + 1e-3).all()
    out = matched(hu.float(), [3, 4])
    assert out.min() == pytest.approx(reference.min(), abs=1e-4) and out.max() == pytest.approx(reference.max(), abs=1e-4)


def test_pretraining_plans_keep_the_network_and_hu_and_the_trainer_matches_the_normalization(tmp_path, monkeypatch):
    from vox2vec_nnunet.errors import Vox2VecError
    from vox2vec_nnunet.pretraining.prepare import TARGET_NORMALIZATION_KEY, target_preprocessing
    from vox2vec_nnunet.training.unet_pretraining import Vox2VecPretrainTrainer_UNet
    from vox2vec_nnunet.training.variants import Vox2VecPretrainTrainer_UNet_Demo

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    labeled = unet_plans("Dataset501_Phantoms")
    preprocessing = target_preprocessing(labeled, "3d_fullres", "labeled.json", ["CT"])
    entry = preprocessing.entry
    assert entry["architecture"] == labeled["configurations"]["3d_fullres"]["architecture"]
    assert entry["normalization_schemes"] == ["NoNormalization"] and entry[TARGET_NORMALIZATION_KEY] == ["CTNormalization"]
    assert preprocessing.patch_size == [12, 20, 24] and preprocessing.spacing == [10.0, 8.0, 8.0]
    with pytest.raises(Vox2VecError, match="no configuration '2d'"):
        target_preprocessing(labeled, "2d", "labeled.json", ["CT"])
    with pytest.raises(Vox2VecError, match="ZScoreNormalization.*the channels \\['CT'\\]"):
        target_preprocessing(unet_plans("Dataset501_Phantoms", normalization="ZScoreNormalization"), "3d_fullres",
                             "labeled.json", ["CT"])

    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "body": 1}, "numTraining": 1,
                    "file_ending": ".nii.gz"}
    plans = dict(preprocessing.dataset_plans("Dataset902_Pretraining", [18, 32, 42]), continue_training=False)
    trainer = Vox2VecPretrainTrainer_UNet(plans, "3d_fullres", "all", dataset_json, torch.device("cpu"))
    properties = labeled["foreground_intensity_properties_per_channel"]["0"]
    (ct_augmentation,) = trainer.channel_augmentation().channels
    assert ct_augmentation.fixed_window_hu == (properties["percentile_00_5"], properties["percentile_99_5"])
    network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 2)
    assert isinstance(network, Vox2VecUNet) and network.level_channels == [32, 64, 128]
    demo = Vox2VecPretrainTrainer_UNet_Demo(dict(plans, continue_training=False), "3d_fullres", "all", dataset_json,
                                            torch.device("cpu"))
    assert demo.channel_augmentation() == trainer.channel_augmentation()  # the U-Net's changes kept
    assert (demo.num_epochs * demo.num_iterations_per_epoch, demo.num_volumes, demo.num_positions,
            demo.snapshot_every) == (300, 4, 256, 2)  # the FPN's demo budget
    with pytest.raises(SystemExit, match="^error: .*--plans PLANS --configuration 3d_fullres"):
        Vox2VecPretrainTrainer_UNet(dict(labeled, continue_training=False), "3d_fullres", "all", dataset_json,
                                    torch.device("cpu"))
