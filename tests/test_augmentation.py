"""Intensity augmentation (paper sec. 3.1, docs/method.md, "Intensity augmentation")."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from vox2vec_nnunet.pretraining.augmentation import IntensityAugmentation, patch_generators

FIXED_WINDOW = (-1350.0, 1000.0)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _seeds(first: int, count: int) -> list[int]:
    """Per-patch seeds, as the data loader gives them (large, distinct)."""
    return [int(s) for s in np.random.SeedSequence(first).generate_state(count, np.uint64) >> np.uint64(1)]


def _parameters(aug: IntensityAugmentation, seeds: list[int]):
    return aug.sample_parameters(patch_generators(seeds, "cpu"), "cpu")


def _to_hu(out: torch.Tensor, low: float = FIXED_WINDOW[0], high: float = FIXED_WINDOW[1]) -> np.ndarray:
    return (out.double() * (high - low) + low).numpy()


def test_output_in_unit_range_keeps_shape_dtype_and_input() -> None:
    patches = (torch.rand(6, 1, 5, 20, 24, generator=_generator(0)) * 4000 - 2000)
    before = patches.clone()
    out = IntensityAugmentation()(patches, _seeds(1, 6))
    assert out.shape == patches.shape and out.dtype == torch.float32 and out.device == patches.device
    assert out.min() >= 0 and out.max() <= 1
    assert 0 < out.mean() < 1
    torch.testing.assert_close(patches, before, rtol=0, atol=0)


def test_parameter_ranges_and_branch_probabilities() -> None:
    aug = IntensityAugmentation()
    n = 20000
    p = _parameters(aug, _seeds(0, n))
    blur, sharpen = p.blur.numpy(), p.sharpen.numpy()
    assert not (blur & sharpen).any()
    filtered = blur | sharpen
    assert abs(filtered.mean() - 0.5) < 0.02
    assert abs(blur[filtered].mean() - 0.5) < 0.02
    sigma = p.filter_sigma.numpy()
    assert 0.25 <= sigma[blur].min() < 0.27 and 1.48 < sigma[blur].max() <= 1.5
    assert 0.5 <= sigma[sharpen].min() < 0.52 and 0.98 < sigma[sharpen].max() <= 1.0
    alpha = p.sharpen_alpha.numpy()[sharpen]
    assert 10 <= alpha.min() < 10.2 and 29.8 < alpha.max() <= 30
    std = p.noise_std_hu.numpy()
    assert abs((std > 0).mean() - 0.5) < 0.02
    assert std.min() >= 0 and 29.8 < std.max() <= 30
    low, high = p.window_low_hu.numpy(), p.window_high_hu.numpy()
    fixed = (low == FIXED_WINDOW[0]) & (high == FIXED_WINDOW[1])
    assert abs(fixed.mean() - 0.2) < 0.02
    assert -1350 <= low[~fixed].min() < -1345 and -1005 < low[~fixed].max() <= -1000
    assert 300 <= high[~fixed].min() < 310 and 990 < high[~fixed].max() <= 1000


def test_window_recovered_from_a_ramp() -> None:
    """A ramp through every possible window: the output is linear in HU with slope
    1 / (high - low), zero below ``low`` and one above ``high``."""
    aug = IntensityAugmentation(filter_p=0.0, noise_p=0.0)
    hu = torch.linspace(-1500.0, 1100.0, 2601)
    patches = hu.view(1, 1, 1, 1, -1).expand(64, 1, 2, 3, -1).contiguous()
    params = _parameters(aug, _seeds(5, 64))
    out = aug(patches, _seeds(5, 64))[:, 0, 0, 0].double()
    windowed = 0
    for row, low, high in zip(out, params.window_low_hu.tolist(), params.window_high_hu.tolist()):
        inside = (row > 0) & (row < 1)
        slope, intercept = np.polyfit(hu[inside].double().numpy(), row[inside].numpy(), 1)
        low_fit, high_fit = -intercept / slope, (1 - intercept) / slope
        assert low_fit == pytest.approx(low, abs=0.5) and high_fit == pytest.approx(high, abs=0.5)
        if (low, high) == FIXED_WINDOW:
            continue
        windowed += 1
        assert -1350 <= low_fit + 0.5 and low_fit - 0.5 <= -1000 and 300 <= high_fit + 0.5 and high_fit - 0.5 <= 1000
    assert 35 < windowed < 64


def test_noise_std_matches_the_drawn_parameter() -> None:
    aug = IntensityAugmentation(filter_p=0.0, window_p=0.0)
    params = _parameters(aug, _seeds(3, 200))
    out = aug(torch.zeros(200, 1, 8, 32, 32), _seeds(3, 200))
    measured = _to_hu(out).reshape(200, -1).std(axis=1)
    expected = params.noise_std_hu.numpy()
    np.testing.assert_allclose(measured, expected, rtol=0.03, atol=1e-3)
    assert measured.max() <= 30 * 1.03
    assert 70 < (expected == 0).sum() < 130


def test_blur_is_in_plane_only() -> None:
    aug = IntensityAugmentation(filter_p=1.0, blur_given_filter_p=1.0, noise_p=0.0, window_p=0.0)
    patches = torch.zeros(8, 1, 5, 25, 25)
    patches[:, 0, 2, 12, 12] = 1000.0
    sigma = _parameters(aug, _seeds(7, 8)).filter_sigma.numpy()
    hu = _to_hu(aug(patches, _seeds(7, 8)))[:, 0]
    for volume, s in zip(hu, sigma):
        taps = np.arange(-math.ceil(3 * s), math.ceil(3 * s) + 1)  # each patch its own radius
        assert np.abs(np.delete(volume, 2, axis=0)).max() < 1e-3  # no spread along z
        plane = volume[2]
        assert plane.sum() == pytest.approx(1000.0, rel=1e-4)
        assert plane[12, 13] > 0.1 and plane[13, 12] > 0.1 and plane[13, 13] > 1e-3
        np.testing.assert_allclose(plane, plane.T, atol=1e-3)
        profile = plane.sum(axis=0) / 1000.0
        kernel = np.exp(-0.5 * (taps / s) ** 2)
        kernel /= kernel.sum()
        np.testing.assert_allclose(profile[12 + taps], kernel, atol=1e-5)  # the sampled Gaussian of sigma s
        assert np.abs(np.delete(profile, 12 + taps)).max() < 1e-6  # nothing beyond its radius
        if s >= 0.7:  # a sampled Gaussian's variance is sigma^2 unless sigma is well below a voxel
            assert (profile * (np.arange(25) - 12) ** 2).sum() == pytest.approx(s ** 2, rel=0.1)


@pytest.mark.parametrize("blur_given_filter_p", [1.0, 0.0], ids=["blur", "sharpen"])
def test_filters_match_scipy(blur_given_filter_p: float) -> None:
    """A batch of patches (radius ceil(3 sigma) each) against scipy with replicate ("nearest") padding."""
    aug = IntensityAugmentation(filter_p=1.0, blur_given_filter_p=blur_given_filter_p, noise_p=0.0,
                                window_p=0.0, fixed_window_hu=(-5000.0, 5000.0))
    x = np.random.default_rng(0).normal(0, 200, (6, 1, 4, 24, 24))
    seeds = _seeds(11, 6)
    p = _parameters(aug, seeds)
    out = aug(torch.from_numpy(x).float(), seeds).double().numpy()[:, 0] * 10000 - 5000

    def blur(v: np.ndarray, s: float) -> np.ndarray:
        r = math.ceil(3 * s)
        return gaussian_filter(v, (0, s, s), mode="nearest", radius=(0, r, r))

    for i in range(6):
        b = blur(x[i, 0], float(p.filter_sigma[i]))
        expected = b if blur_given_filter_p else b + float(p.sharpen_alpha[i]) * (b - blur(b, 0.5))
        np.testing.assert_allclose(out[i], expected, atol=0.05 if blur_given_filter_p else 0.5)


@pytest.mark.parametrize("device", DEVICES)
def test_patches_on_the_device_are_repeatable(device: str) -> None:
    """The training step's path (patches and generators on the training device); on the CPU
    it is the twin of the CUDA path."""
    patches = (torch.rand(6, 1, 4, 16, 16, generator=_generator(0)) * 3000 - 1500).to(device)
    aug = IntensityAugmentation(filter_p=1.0, noise_p=1.0)
    out = aug(patches, _seeds(2, 6))
    assert out.device == patches.device and out.shape == patches.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, aug(patches, _seeds(2, 6)))  # the same seeds, the same numbers
    assert not torch.equal(out, aug(patches, _seeds(3, 6)))


@pytest.mark.parametrize("device", DEVICES)
def test_a_patch_depends_on_its_seed_only(device: str) -> None:
    """Augmented in a batch or alone, in any order, a patch gets the same result, on the CPU
    to the bit: batches split over workers or ranks augment every patch as one process would
    (a run on several processes is compared with one process in float64, where a last-bit
    difference of the float32 patches would show)."""
    count = 24  # filters of many different reaches in one batch
    patches = (torch.rand(count, 1, 4, 20, 20, generator=_generator(1)) * 3000 - 1500).to(device)
    seeds = _seeds(4, count)
    aug = IntensityAugmentation(filter_p=0.9)
    batch = aug(patches, seeds)
    same = torch.equal if device == "cpu" else \
        lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-6)  # CUDA kernels may vary with the batch
    for i in range(count):
        assert same(aug(patches[i:i + 1], seeds[i:i + 1])[0], batch[i]), i
    order = torch.randperm(count, generator=_generator(2)).tolist()
    assert same(aug(patches[order], [seeds[i] for i in order]), batch[order])


def test_bad_input() -> None:
    aug = IntensityAugmentation()
    with pytest.raises(ValueError, match="shape"):
        aug(torch.zeros(2, 4, 8, 8), [0, 1])
    with pytest.raises(ValueError, match="floating"):
        aug(torch.zeros(2, 1, 4, 8, 8, dtype=torch.int16), [0, 1])
    with pytest.raises(ValueError, match="one seed per patch"):
        aug(torch.zeros(2, 1, 4, 8, 8), [0, 1, 2])
    with pytest.raises(ValueError, match="probability"):
        IntensityAugmentation(noise_p=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        IntensityAugmentation(blur_sigma=(1.5, 0.25))
