"""Intensity augmentation of pre-training patches (paper sec. 3.1; docs/method.md, "Intensity
augmentation").

Patches are HU tensors ``(B, 1, z, y, x)`` (slice axis first, see
:mod:`vox2vec_nnunet.pretraining.body_mask`); every patch gets its own random parameters,
applied in the reference order:

1. with p=0.5 an in-plane filter: either (50/50) a Gaussian blur with sigma ~ U(0.25, 1.5)
   voxels, or a sharpening ``b = G_s1(x); out = b + alpha * (b - G_0.5(b))`` with
   s1 ~ U(0.5, 1.0), alpha ~ U(10, 30);
2. with p=0.5 Gaussian noise, std ~ U(0, 30) HU;
3. with p=0.8 a random window low ~ U(-1350, -1000), high ~ U(300, 1000) HU, else the
   fixed window (-1350, 1000); then ``clip((HU - low) / (high - low), 0, 1)``, mapped
   linearly onto ``output_range`` (for nnU-Net's own U-Nets, onto what the plans'
   CTNormalization gives: :meth:`IntensityAugmentation.for_ct_normalization`).

Only these intensity augmentations: no spatial augmentation besides the crop (docs/method.md,
"Intensity augmentation").
The filters act on the two in-plane axes (y, x) only, as the reference filters the axial
plane. They are separable sampled Gaussians with one kernel per patch, applied to the whole
batch at once (:func:`gaussian_blur_in_plane`), each kernel reaching ``ceil(3 * sigma)``
voxels for its own sigma, and replicate padding (scipy's ``mode="nearest"``): it needs no
minimum patch size and invents no intensities at the border (zero padding would add a
water-like frame). The reference uses scipy's default half-sample reflection; the two
differ only within a few voxels of the patch border.

Randomness: every patch has its own seed (the data loader derives it from the run's seed,
the iteration and the patch's slot, :mod:`vox2vec_nnunet.pretraining.dataloader`) and draws
its parameters, then its noise, from its own ``torch.Generator`` on the patches' device. A
patch's augmentation therefore depends on its seed only, not on the other patches of the
batch or on the worker, rank or device that runs it, and a seeded run is repeatable. A CPU
and a CUDA generator give different numbers for one seed; each device is repeatable.

Everything is torch and batched, on the patches' device (CPU or CUDA). Call it outside
autocast regions: the filters and the window run in the patches' dtype (float32).

Channels that are not CT (:mod:`vox2vec_nnunet.channels`) are stored z-scored, as nnU-Net's
``ZScoreNormalization`` leaves them for fine-tuning, and get
:class:`NormalizedIntensityAugmentation` instead, in normalised units: a smooth multiplicative
bias field, then the intensity transforms nnU-Net's training pipeline applies to such channels
(Gaussian noise, blur, multiplicative brightness, contrast, gamma) with its ranges. They are
written here rather than taken from batchgeneratorsv2, whose transforms draw from the global
random generators, one sample at a time on the CPU: the pre-training draws every patch's
parameters from the patch's own generator (above), batched on any device.
:class:`ChannelAugmentation` gives each channel of a multi-channel patch its augmentation, with a
seed of its own derived from the patch's seed (:func:`channel_seeds`; channel 0 keeps the
patch's seed, so a single-channel CT batch is augmented exactly as before).
"""
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vox2vec_nnunet.channels import HU_KEPT, ZSCORE_NORMALIZATION

NUM_PARAMETER_DRAWS = 10
"""Uniform numbers each patch draws for its parameters, before its noise."""


@dataclass(frozen=True)
class IntensityAugmentationParameters:
    """Per-patch parameters of one augmentation draw; every field is a tensor of shape (B,).

    ``blur``/``sharpen`` say which filter a patch gets (at most one is True);
    ``filter_sigma`` is the blur's sigma or the sharpening's s1 (in voxels);
    ``sharpen_alpha`` is the sharpening strength; ``noise_std_hu`` is 0 for patches
    without noise; ``window_low_hu``/``window_high_hu`` is the window of each patch.
    """

    blur: torch.Tensor
    sharpen: torch.Tensor
    filter_sigma: torch.Tensor
    sharpen_alpha: torch.Tensor
    noise_std_hu: torch.Tensor
    window_low_hu: torch.Tensor
    window_high_hu: torch.Tensor


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def patch_generators(seeds: Sequence[int] | torch.Tensor, device: torch.device | str) -> list[torch.Generator]:
    """One ``torch.Generator`` on ``device`` per patch, seeded with the patch's seed."""
    values = seeds.tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in values]


def _blur_matrix(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """The ``(size, size)`` matrix of a 1-D Gaussian blur of ``sigma`` (a 0-d tensor) with
    replicate padding.

    Entry ``[i, j]`` is the weight of input index ``i`` in output index ``j``; the taps of a
    sampled Gaussian reach ``ceil(3 * sigma)`` voxels (at least one) and read clamped indices
    (replicate padding), so the edge voxels collect the weights of the padded taps.
    """
    reach = int(torch.ceil(3.0 * sigma.double()).clamp(min=1))
    taps = torch.arange(-reach, reach + 1, device=sigma.device, dtype=sigma.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    output = torch.arange(size, device=sigma.device)[:, None]
    source = (output + taps.long()[None, :]).clamp(0, size - 1)
    matrix = torch.zeros(size, size, device=sigma.device, dtype=sigma.dtype)
    return matrix.index_put_((source, output.expand_as(source)), kernel.expand(size, -1), accumulate=True)


def _blur_matrices(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Per-patch matrices ``(B, size, size)`` of :func:`_blur_matrix` for ``sigma[b]``. Each is
    built on its own: a kernel computed in a batch padded to the widest reach came out with
    other rounding (vectorised ``exp`` and sums over another length), so a patch's blur
    depended on its batch mates in the last bits, and a run split over processes differed
    from one process."""
    return torch.stack([_blur_matrix(s, size) for s in sigma])


def gaussian_blur_in_plane(patches: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each patch of ``(B, 1, z, y, x)`` along y and x with its own ``sigma[b]`` (voxels).

    Separable sampled Gaussian of radius ``ceil(3 * sigma[b])`` (scipy's ``gaussian_filter``
    with that ``radius``), replicate padding; the slice axis z is left untouched. Each 1-D pass is a batched matrix product with a banded
    per-patch matrix rather than a grouped convolution: on CUDA a float32 matrix product
    stays in full fp32 by default, while cuDNN convolutions default to TF32 on Ampere GPUs,
    whose rounding the sharpening (alpha up to 30) amplifies (rms 2 HU, up to 17 HU, when
    simulated with TF32-rounded operands). On the CPU (1-2 threads) it takes 1.0-1.3x the
    time of a grouped convolution.
    """
    batch, _, depth, height, width = patches.shape
    sigma = sigma.to(device=patches.device, dtype=patches.dtype)
    along_x = _blur_matrices(sigma, width)
    along_y = _blur_matrices(sigma, height)
    slices = torch.bmm(patches.reshape(batch, depth * height, width), along_x).view(batch, depth, height, width)
    columns = slices.transpose(1, 2).reshape(batch, height, depth * width)
    slices = torch.bmm(along_y.transpose(1, 2), columns).view(batch, height, depth, width).transpose(1, 2)
    return slices.unsqueeze(1)


@dataclass(frozen=True)
class IntensityAugmentation:
    """The paper's intensity augmentation with the reference ranges as defaults.

    A variant changes a field, e.g. ``IntensityAugmentation(window_p=0.0)`` always uses
    the fixed window. Calling it with HU patches ``(B, 1, z, y, x)`` and B seeds maps the
    patches to [0, 1] (or ``output_range``).
    """

    filter_p: float = 0.5
    blur_given_filter_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.25, 1.5)
    sharpen_sigma1: tuple[float, float] = (0.5, 1.0)
    sharpen_sigma2: float = 0.5
    sharpen_alpha: tuple[float, float] = (10.0, 30.0)
    noise_p: float = 0.5
    noise_std_hu: tuple[float, float] = (0.0, 30.0)
    window_p: float = 0.8
    window_low_hu: tuple[float, float] = (-1350.0, -1000.0)
    window_high_hu: tuple[float, float] = (300.0, 1000.0)
    fixed_window_hu: tuple[float, float] = (-1350.0, 1000.0)
    output_range: tuple[float, float] = (0.0, 1.0)
    """What a window's ends map onto, linearly: [0, 1] for the FPN (paper Sect. 4.2); for an
    nnU-Net plans, its CTNormalization values (:meth:`for_ct_normalization`)."""

    def for_ct_normalization(self, properties: Mapping[str, float]) -> "IntensityAugmentation":
        """This augmentation made to end where nnU-Net's ``CTNormalization`` of a plans ends.

        ``CTNormalization`` clips HU to the plans' ``percentile_00_5`` and ``percentile_99_5``
        (p, q) and computes ``(HU - mean) / std``. Here the fixed window becomes (p, q) and the
        output range ``((p - mean) / std, (q - mean) / std)``, so a patch without a random
        window gets exactly what the segmentation network will see; the random windows'
        ranges are moved with the fixed window, scaled by the ratio of the widths (the paper's
        low end varies over the first 350 of its 2,350 HU, the high end over the last 700),
        so a random window still stretches a narrower HU range over the same output range.
        Blur, sharpening and noise (in HU) are unchanged.
        """
        low, high = float(properties["percentile_00_5"]), float(properties["percentile_99_5"])
        mean, std = float(properties["mean"]), max(float(properties["std"]), 1e-8)  # as CTNormalization
        if not low < high:
            raise ValueError(f"CTNormalization properties need percentile_00_5 < percentile_99_5, got {low}, {high}")
        fixed_low, fixed_high = self.fixed_window_hu
        scale = (high - low) / (fixed_high - fixed_low)

        def moved(bounds: tuple[float, float]) -> tuple[float, float]:
            return (low + (bounds[0] - fixed_low) * scale, low + (bounds[1] - fixed_low) * scale)

        return replace(self, fixed_window_hu=(low, high), window_low_hu=moved(self.window_low_hu),
                       window_high_hu=moved(self.window_high_hu),
                       output_range=((low - mean) / std, (high - mean) / std))

    def __post_init__(self) -> None:
        for name in ("filter_p", "blur_given_filter_p", "noise_p", "window_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"IntensityAugmentation.{name} must be a probability, got {getattr(self, name)}")
        if not self.output_range[0] < self.output_range[1]:
            raise ValueError(f"IntensityAugmentation.output_range must be (low, high) with low < high, "
                             f"got {self.output_range}")
        for name in ("blur_sigma", "sharpen_sigma1", "sharpen_alpha", "noise_std_hu",
                     "window_low_hu", "window_high_hu", "fixed_window_hu"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"IntensityAugmentation.{name} must be (low, high) with low <= high, "
                                 f"got {(low, high)}")
        if min(self.blur_sigma[0], self.sharpen_sigma1[0], self.sharpen_sigma2) <= 0:
            raise ValueError("IntensityAugmentation: filter sigmas must be positive")
        if self.window_low_hu[1] >= self.window_high_hu[0] or self.fixed_window_hu[0] >= self.fixed_window_hu[1]:
            raise ValueError("IntensityAugmentation: every window must have low < high")

    def sample_parameters(self, generators: Sequence[torch.Generator],
                          device: torch.device | str) -> IntensityAugmentationParameters:
        """Draw the parameters of each patch from its generator and put them on ``device``."""
        u = torch.stack([torch.rand(NUM_PARAMETER_DRAWS, generator=g, device=g.device) for g in generators])
        u = u.to(device)
        zeros = torch.zeros_like(u[:, 0])
        filtered = u[:, 0] < self.filter_p
        blur = filtered & (u[:, 1] < self.blur_given_filter_p)
        sharpen = filtered & ~blur
        windowed = u[:, 7] < self.window_p
        return IntensityAugmentationParameters(
            blur=blur,
            sharpen=sharpen,
            filter_sigma=torch.where(blur, _uniform(u[:, 2], self.blur_sigma), _uniform(u[:, 3], self.sharpen_sigma1)),
            sharpen_alpha=torch.where(sharpen, _uniform(u[:, 4], self.sharpen_alpha), zeros),
            noise_std_hu=torch.where(u[:, 5] < self.noise_p, _uniform(u[:, 6], self.noise_std_hu), zeros),
            window_low_hu=torch.where(windowed, _uniform(u[:, 8], self.window_low_hu),
                                      zeros + self.fixed_window_hu[0]),
            window_high_hu=torch.where(windowed, _uniform(u[:, 9], self.window_high_hu),
                                       zeros + self.fixed_window_hu[1]),
        )

    def apply(self, patches: torch.Tensor, params: IntensityAugmentationParameters,
              generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Augment HU ``patches`` with the given parameters; each noisy patch draws its noise
        from its generator (on the patches' device; after its parameters, when they were drawn
        from it).

        ``patches`` is left unchanged; the result is a new tensor.
        """
        x = patches.clone()
        filtered = (params.blur | params.sharpen).nonzero().squeeze(1)
        if filtered.numel() > 0:
            smoothed = gaussian_blur_in_plane(x.index_select(0, filtered), params.filter_sigma[filtered])
            sharpened = params.sharpen[filtered].nonzero().squeeze(1)
            if sharpened.numel() > 0:
                b = smoothed.index_select(0, sharpened)
                alpha = params.sharpen_alpha[filtered][sharpened].view(-1, 1, 1, 1, 1).to(x.dtype)
                second = gaussian_blur_in_plane(b, torch.full_like(alpha.view(-1), self.sharpen_sigma2))
                smoothed.index_copy_(0, sharpened, b + alpha * (b - second))
            x.index_copy_(0, filtered, smoothed)

        noisy = (params.noise_std_hu > 0).nonzero().squeeze(1)
        if noisy.numel() > 0:
            noise = torch.empty((noisy.numel(), *x.shape[1:]), device=x.device, dtype=x.dtype)
            for row, b in enumerate(noisy.tolist()):
                noise[row].normal_(generator=generators[b])
            x.index_add_(0, noisy, noise.mul_(params.noise_std_hu[noisy].view(-1, 1, 1, 1, 1).to(x.dtype)))

        low = params.window_low_hu.view(-1, 1, 1, 1, 1).to(x.dtype)
        high = params.window_high_hu.view(-1, 1, 1, 1, 1).to(x.dtype)
        x = x.sub_(low).div_(high - low).clamp_(0.0, 1.0)
        if self.output_range != (0.0, 1.0):
            x = x.mul_(self.output_range[1] - self.output_range[0]).add_(self.output_range[0])
        return x

    def __call__(self, patches: torch.Tensor, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Augment HU patches ``(B, 1, z, y, x)`` (floating point, any device) into ``output_range`` ([0, 1] by default).

        ``seeds`` holds one seed per patch; patch b draws from a generator on the patches'
        device seeded with ``seeds[b]`` (:func:`patch_generators`).
        """
        if patches.ndim != 5 or patches.shape[1] != 1:
            raise ValueError(f"expected HU patches of shape (B, 1, z, y, x), got {tuple(patches.shape)}")
        if not patches.is_floating_point():
            raise ValueError(f"expected floating-point HU patches, got dtype {patches.dtype}")
        generators = patch_generators(seeds, patches.device)
        if len(generators) != patches.shape[0]:
            raise ValueError(f"expected one seed per patch, got {len(generators)} seeds for {patches.shape[0]} patches")
        return self.apply(patches, self.sample_parameters(generators, patches.device), generators)


NUM_NORMALIZED_DRAWS = 12
"""Uniform numbers each patch draws for :class:`NormalizedIntensityAugmentation`, before its
bias field's grid and its noise."""


@dataclass(frozen=True)
class NormalizedIntensityParameters:
    """Per-patch parameters of :class:`NormalizedIntensityAugmentation`; tensors of shape (B,).

    A transform a patch does not get has its neutral value (strength 0, std 0, factor 1).
    """

    bias_strength: torch.Tensor
    noise_std: torch.Tensor
    blur_sigma: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    gamma: torch.Tensor


@dataclass(frozen=True)
class NormalizedIntensityAugmentation:
    """Intensity augmentation of z-scored patches ``(B, 1, z, y, x)`` (channels that are not CT).

    In this order, each with its own probability:

    1. a smooth multiplicative bias field ``exp(s * g)``: ``g`` a 3x3x3 grid of standard normal
       values interpolated (trilinear) over the patch, ``s ~ U(bias_strength)``; MR's coil
       sensitivity makes such fields, and an image's z-scoring does not remove them;
    2. Gaussian noise of variance ``~ U(noise_variance)``;
    3. an in-plane Gaussian blur, sigma ``~ U(blur_sigma)`` voxels (:func:`gaussian_blur_in_plane`);
    4. multiplicative brightness ``x * U(brightness)``;
    5. contrast ``(x - mean) * U(contrast) + mean`` clipped to the patch's range before it;
    6. gamma ``x -> min + range * ((x - min) / range) ** U(gamma)``, the mean and std restored.

    Ranges 2-6 are those nnU-Net's default training pipeline gives batchgeneratorsv2's
    ``GaussianNoiseTransform``, ``GaussianBlurTransform``, ``MultiplicativeBrightnessTransform``,
    ``ContrastTransform`` (range preserved) and ``GammaTransform`` (statistics retained). The
    probabilities are the paper's 0.5 for each step (its filter and noise steps, Sect. 3.1)
    rather than nnU-Net's 0.1-0.3 for segmentation: here the augmentation is what tells the two
    views of a voxel apart. There is no window: z-scored intensities have no fixed range, and the
    segmentation network sees them unclipped. The blur is in-plane as the paper's filter.
    """

    bias_p: float = 0.5
    bias_strength: tuple[float, float] = (0.0, 0.3)
    noise_p: float = 0.5
    noise_variance: tuple[float, float] = (0.0, 0.1)
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    brightness_p: float = 0.5
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast_p: float = 0.5
    contrast: tuple[float, float] = (0.75, 1.25)
    gamma_p: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for name in ("bias_p", "noise_p", "blur_p", "brightness_p", "contrast_p", "gamma_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"NormalizedIntensityAugmentation.{name} must be a probability, "
                                 f"got {getattr(self, name)}")
        for name in ("bias_strength", "noise_variance", "blur_sigma", "brightness", "contrast", "gamma"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"NormalizedIntensityAugmentation.{name} must be (low, high) with low <= high, "
                                 f"got {(low, high)}")
        if self.bias_strength[0] < 0 or self.noise_variance[0] < 0:
            raise ValueError("NormalizedIntensityAugmentation: bias strength and noise variance must be >= 0")
        if min(self.blur_sigma[0], self.brightness[0], self.contrast[0], self.gamma[0]) <= 0:
            raise ValueError("NormalizedIntensityAugmentation: blur sigma, brightness, contrast and gamma must be "
                             "positive")

    def sample_parameters(self, generators: Sequence[torch.Generator],
                          device: torch.device | str) -> NormalizedIntensityParameters:
        """Draw the parameters of each patch from its generator and put them on ``device``."""
        u = torch.stack([torch.rand(NUM_NORMALIZED_DRAWS, generator=g, device=g.device) for g in generators])
        u = u.to(device)
        zeros, ones = torch.zeros_like(u[:, 0]), torch.ones_like(u[:, 0])

        def draw(p: float, bounds: tuple[float, float], column: int, neutral: torch.Tensor) -> torch.Tensor:
            return torch.where(u[:, column] < p, _uniform(u[:, column + 1], bounds), neutral)

        return NormalizedIntensityParameters(
            bias_strength=draw(self.bias_p, self.bias_strength, 0, zeros),
            noise_std=draw(self.noise_p, self.noise_variance, 2, zeros).sqrt(),
            blur_sigma=draw(self.blur_p, self.blur_sigma, 4, zeros),
            brightness=draw(self.brightness_p, self.brightness, 6, ones),
            contrast=draw(self.contrast_p, self.contrast, 8, ones),
            gamma=draw(self.gamma_p, self.gamma, 10, ones),
        )

    def apply(self, patches: torch.Tensor, params: NormalizedIntensityParameters,
              generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Augment z-scored ``patches`` with the given parameters; a patch with a bias field draws
        its grid, then a noisy patch its noise, from its generator (after its parameters).

        ``patches`` is left unchanged; the result is a new tensor.
        """
        x = patches.clone()
        shape = (-1, 1, 1, 1, 1)
        biased = (params.bias_strength > 0).nonzero().squeeze(1)
        if biased.numel() > 0:
            grid = torch.stack([torch.randn(1, 3, 3, 3, generator=generators[b], device=generators[b].device)
                                for b in biased.tolist()]).to(device=x.device, dtype=x.dtype)
            field = F.interpolate(grid, size=x.shape[2:], mode="trilinear", align_corners=True)
            field = torch.exp(field * params.bias_strength[biased].view(shape).to(x.dtype))
            x.index_copy_(0, biased, x.index_select(0, biased) * field)

        noisy = (params.noise_std > 0).nonzero().squeeze(1)
        if noisy.numel() > 0:
            noise = torch.empty((noisy.numel(), *x.shape[1:]), device=x.device, dtype=x.dtype)
            for row, b in enumerate(noisy.tolist()):
                noise[row].normal_(generator=generators[b])
            x.index_add_(0, noisy, noise.mul_(params.noise_std[noisy].view(shape).to(x.dtype)))

        blurred = (params.blur_sigma > 0).nonzero().squeeze(1)
        if blurred.numel() > 0:
            x.index_copy_(0, blurred, gaussian_blur_in_plane(x.index_select(0, blurred), params.blur_sigma[blurred]))

        x = x.mul_(params.brightness.view(shape).to(x.dtype))

        dims = tuple(range(1, x.ndim))
        low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        mean = x.mean(dim=dims, keepdim=True)
        contrasted = (x - mean) * params.contrast.view(shape).to(x.dtype) + mean
        x = torch.where((params.contrast != 1).view(shape), torch.minimum(torch.maximum(contrasted, low), high), x)

        gamma = params.gamma.view(shape).to(x.dtype)
        low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True)
        span = (high - low).clamp_min(1e-7)
        powered = ((x - low) / span).clamp_(0.0, 1.0).pow(gamma) * span + low
        restored = (powered - powered.mean(dim=dims, keepdim=True)) / \
            powered.std(dim=dims, keepdim=True).clamp_min(1e-7) * std + mean
        return torch.where((params.gamma != 1).view(shape), restored, x)

    def __call__(self, patches: torch.Tensor, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Augment z-scored patches ``(B, 1, z, y, x)`` (floating point, any device), one seed per
        patch, as :meth:`IntensityAugmentation.__call__`."""
        if patches.ndim != 5 or patches.shape[1] != 1:
            raise ValueError(f"expected patches of shape (B, 1, z, y, x), got {tuple(patches.shape)}")
        if not patches.is_floating_point():
            raise ValueError(f"expected floating-point patches, got dtype {patches.dtype}")
        generators = patch_generators(seeds, patches.device)
        if len(generators) != patches.shape[0]:
            raise ValueError(f"expected one seed per patch, got {len(generators)} seeds for {patches.shape[0]} patches")
        return self.apply(patches, self.sample_parameters(generators, patches.device), generators)


def channel_seeds(seeds: Sequence[int] | torch.Tensor, channel: int) -> list[int]:
    """The augmentation seeds of ``channel`` of patches with ``seeds``: channel 0 keeps them,
    channel c > 0 gets ``SeedSequence(seed, spawn_key=(c,))``'s first 63 bits."""
    values = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
    if channel == 0:
        return values
    return [int(np.random.SeedSequence(s, spawn_key=(channel,)).generate_state(1, np.uint64)[0] >> np.uint64(1))
            for s in values]


@dataclass(frozen=True)
class ChannelAugmentation:
    """Each channel of patches ``(B, C, z, y, x)`` augmented by its own augmentation, with its own
    seeds (:func:`channel_seeds`); spatial decisions (the crop) are shared by every channel."""

    channels: tuple[IntensityAugmentation | NormalizedIntensityAugmentation, ...]

    @classmethod
    def for_stored_schemes(cls, schemes: Sequence[str], ct: Sequence[IntensityAugmentation],
                           normalized: NormalizedIntensityAugmentation) -> "ChannelAugmentation":
        """The augmentation of pre-training data stored with the plans' normalisation ``schemes``:
        a channel kept in HU (``NoNormalization``, a CT channel) gets ``ct[c]``, a z-scored one
        ``normalized``; other schemes raise ValueError."""
        augmentations = []
        for c, scheme in enumerate(schemes):
            if scheme == HU_KEPT:
                augmentations.append(ct[c])
            elif scheme == ZSCORE_NORMALIZATION:
                augmentations.append(normalized)
            else:
                raise ValueError(f"channel {c} of the pre-training data is stored with {scheme}; vox2vec pre-trains on "
                                 f"CT kept in HU ({HU_KEPT}) and z-scored channels ({ZSCORE_NORMALIZATION})")
        return cls(tuple(augmentations))

    def __call__(self, patches: torch.Tensor, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        if patches.ndim != 5 or patches.shape[1] != len(self.channels):
            raise ValueError(f"expected patches of shape (B, {len(self.channels)}, z, y, x), got "
                             f"{tuple(patches.shape)}")
        if len(self.channels) == 1:
            return self.channels[0](patches, seeds)
        return torch.cat([augmentation(patches[:, c:c + 1], channel_seeds(seeds, c))
                          for c, augmentation in enumerate(self.channels)], dim=1)
