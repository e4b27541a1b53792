"""Augmentation of z-scored channels (not CT) and of multi-channel patches, in normalised units."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, map_coordinates

from vox2vec_nnunet.pretraining.augmentation import (NUM_NORMALIZED_DRAWS, ChannelAugmentation,
                                                     IntensityAugmentation, NormalizedIntensityAugmentation,
                                                     channel_seeds, patch_generators)

NONE = dict(bias_p=0.0, noise_p=0.0, blur_p=0.0, brightness_p=0.0, contrast_p=0.0, gamma_p=0.0)


def _seeds(first: int, count: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(first).generate_state(count, np.uint64) >> np.uint64(1)]


def _patches(count: int, shape=(4, 12, 14), seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1, *shape, generator=torch.Generator().manual_seed(seed))


def _parameters(aug: NormalizedIntensityAugmentation, seeds: list[int]):
    return aug.sample_parameters(patch_generators(seeds, "cpu"), "cpu")


def test_parameter_ranges_and_probabilities_are_in_normalized_units() -> None:
    p = _parameters(NormalizedIntensityAugmentation(), _seeds(0, 20000))
    for name, neutral, (low, high) in (("bias_strength", 0.0, (0.0, 0.3)), ("noise_std", 0.0, (0.0, 0.1 ** 0.5)),
                                       ("blur_sigma", 0.0, (0.5, 1.0)), ("brightness", 1.0, (0.75, 1.25)),
                                       ("contrast", 1.0, (0.75, 1.25)), ("gamma", 1.0, (0.7, 1.5))):
        values = getattr(p, name).numpy()
        drawn = values != neutral
        assert abs(drawn.mean() - 0.5) < 0.02, name
        assert low <= values[drawn].min() < low + 0.01 * (high - low) + 1e-3, name
        assert high - 0.01 * (high - low) < values[drawn].max() <= high + 1e-6, name
    variance = p.noise_std.numpy() ** 2
    assert abs(variance[variance > 0].mean() - 0.05) < 0.002  # variance ~ U(0, 0.1), nnU-Net's


def test_brightness_contrast_and_gamma_against_a_numpy_reference() -> None:
    x = _patches(40).abs() + 0.1 * _patches(40, seed=1)
    seeds = _seeds(1, 40)
    aug = NormalizedIntensityAugmentation(**dict(NONE, brightness_p=0.5, contrast_p=0.5, gamma_p=0.5))
    p = _parameters(aug, seeds)
    out = aug(x, seeds).double().numpy()
    for i in range(40):
        v = x[i].double().numpy() * float(p.brightness[i])
        if float(p.contrast[i]) != 1:
            v = np.clip((v - v.mean()) * float(p.contrast[i]) + v.mean(), v.min(), v.max())
        if float(p.gamma[i]) != 1:
            mean, std, low, span = v.mean(), v.std(ddof=1), v.min(), v.max() - v.min()
            g = ((v - low) / span) ** float(p.gamma[i]) * span + low
            v = (g - g.mean()) / g.std(ddof=1) * std + mean
        np.testing.assert_allclose(out[i], v, rtol=1e-4, atol=1e-4)
    assert (p.gamma != 1).sum() > 10 and (p.contrast != 1).sum() > 10


def test_noise_and_in_plane_blur() -> None:
    seeds = _seeds(2, 200)
    aug = NormalizedIntensityAugmentation(**dict(NONE, noise_p=0.5))
    out = aug(torch.zeros(200, 1, 8, 32, 32), seeds)
    np.testing.assert_allclose(out.reshape(200, -1).std(1).numpy(), _parameters(aug, seeds).noise_std.numpy(),
                               rtol=0.03, atol=1e-3)
    aug = NormalizedIntensityAugmentation(**dict(NONE, blur_p=1.0))
    x = _patches(6, (4, 24, 24), seed=3)
    sigma = _parameters(aug, _seeds(3, 6)).blur_sigma.numpy()
    out = aug(x, _seeds(3, 6)).double().numpy()
    for i in range(6):
        r = int(np.ceil(3 * sigma[i]))
        expected = gaussian_filter(x[i, 0].double().numpy(), (0, sigma[i], sigma[i]), mode="nearest", radius=(0, r, r))
        np.testing.assert_allclose(out[i, 0], expected, atol=1e-5)


def test_bias_field_is_the_exponential_of_a_trilinear_3x3x3_grid() -> None:
    """Against scipy's linear interpolation of the grid the patch's generator draws after its
    parameters; the field is smooth and positive."""
    aug = NormalizedIntensityAugmentation(**dict(NONE, bias_p=1.0))
    seeds = _seeds(4, 5)
    x = torch.ones(5, 1, 5, 9, 11)
    strength = _parameters(aug, seeds).bias_strength.numpy()
    out = aug(x, seeds).double().numpy()
    for i, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        torch.rand(NUM_NORMALIZED_DRAWS, generator=generator)
        grid = torch.randn(1, 3, 3, 3, generator=generator)[0].double().numpy()
        coordinates = np.meshgrid(*[np.linspace(0, 2, n) for n in x.shape[2:]], indexing="ij")
        expected = np.exp(strength[i] * map_coordinates(grid, coordinates, order=1))
        np.testing.assert_allclose(out[i, 0], expected, rtol=1e-5)
    assert out.min() > 0 and (strength > 0).all()


def test_a_patch_depends_on_its_seed_only_and_the_input_is_kept() -> None:
    x = _patches(12)
    before = x.clone()
    seeds = _seeds(5, 12)
    aug = NormalizedIntensityAugmentation()
    batch = aug(x, seeds)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    assert batch.shape == x.shape and batch.dtype == torch.float32 and not torch.equal(batch, x)
    for i in range(12):
        assert torch.equal(aug(x[i:i + 1], seeds[i:i + 1])[0], batch[i]), i
    assert not torch.equal(aug(x, _seeds(6, 12)), batch)


def test_each_channel_gets_its_augmentation_and_its_own_seeds() -> None:
    """CT (HU, the paper's window) and a z-scored channel in one patch: channel c is augmented
    as a patch of its own with channel_seeds(seeds, c); channel 0 keeps the patch's seeds, so one
    CT channel is augmented exactly as before."""
    ct, mr = IntensityAugmentation(), NormalizedIntensityAugmentation()
    seeds = _seeds(7, 6)
    hu = _patches(6) * 500
    assert torch.equal(ChannelAugmentation((ct,))(hu, seeds), ct(hu, seeds))
    both = ChannelAugmentation.for_stored_schemes(["NoNormalization", "ZScoreNormalization"], [ct, ct], mr)
    assert both.channels == (ct, mr)
    x = torch.cat([hu, _patches(6, seed=8)], dim=1)
    out = both(x, seeds)
    assert torch.equal(out[:, :1], ct(x[:, :1], seeds))
    assert torch.equal(out[:, 1:], mr(x[:, 1:], channel_seeds(seeds, 1)))
    assert channel_seeds(seeds, 0) == seeds and len(set(channel_seeds(seeds, 1)) | set(seeds)) == 12
    twins = ChannelAugmentation((mr, mr))(torch.cat([x[:, 1:]] * 2, dim=1), seeds)
    assert not torch.equal(twins[:, 0], twins[:, 1])  # two channels, two draws
    with pytest.raises(ValueError, match="RescaleTo01Normalization"):
        ChannelAugmentation.for_stored_schemes(["RescaleTo01Normalization"], [ct], mr)
    with pytest.raises(ValueError, match=r"\(B, 2, z, y, x\)"):
        both(hu, seeds)


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="probability"):
        NormalizedIntensityAugmentation(gamma_p=2.0)
    with pytest.raises(ValueError, match="low <= high"):
        NormalizedIntensityAugmentation(brightness=(1.25, 0.75))
    with pytest.raises(ValueError, match="positive"):
        NormalizedIntensityAugmentation(gamma=(0.0, 1.5))
    with pytest.raises(ValueError, match="one seed per patch"):
        NormalizedIntensityAugmentation()(_patches(2), [0])
