"""The MR scanner of the phantoms: the same subjects and labels with T1- or T2-weighted contrast.

A seed is one subject whatever the scanner: :class:`vox2vec_nnunet.phantoms.anatomy.Subject`
paints its tissue classes (:class:`~vox2vec_nnunet.phantoms.anatomy.Tissue`) and labels once;
where CT gives the classes Hounsfield units, MR gives them a relative signal from a contrast
table (:data:`CONTRASTS`, docs/phantoms.md) and adds what an MR scanner adds and
CT does not, each drawn per scan (:meth:`MRConfig.scan`):

* no physical unit: the signal times a global scale, log-uniform over ``MRConfig.scale``;
* a smooth multiplicative bias field (receive-coil sensitivity), ``exp(b f)`` with ``f`` a
  smooth unit-variance field of 150 mm node spacing clipped at 2 standard deviations and ``b``
  drawn from ``MRConfig.bias``: at most x0.71 to x1.41 with the defaults;
* Rician noise: the magnitude of the signal plus complex Gaussian noise whose standard
  deviation is a fraction ``MRConfig.noise`` of the brightest tissue's signal, so every value
  is >= 0 and the background (no signal outside the body: air, the table) is Rayleigh noise;
* thick slices: a slice spacing drawn from ``MRConfig.slice_mm`` (4-6 mm) and an in-plane pixel
  from ``MRConfig.pixel_mm`` (1.2-2 mm) per case, the slice profile as wide as the slice.

The channels of one scan (``MRConfig.channels``, e.g. T1 and T2) are co-registered sequences of
one session: the same subject, grid, tissue texture and bias field, independent noise.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vox2vec_nnunet.phantoms.anatomy import FOV_Z_RANGE_MM, MIN_FOV_YX_MM, Subject, Tissue, check_seed
from vox2vec_nnunet.phantoms.geometry import ScanGeometry

#: Relative signal of each tissue class (the brightest about 1) before the per-scan variation.
#: T1: a T1-weighted gradient echo without contrast agent -- fat and fatty marrow bright, liver
#: brighter than spleen and muscle, kidney cortex brighter than medulla, fluid dark, flowing
#: blood dark (flow void). T2: a T2-weighted fast spin echo without fat suppression -- fluid
#: (bowel contents, bile, cerebrospinal fluid) brightest, discs, kidneys and spleen bright,
#: liver and muscle dark, fat intermediate to bright. Both: air, lungs and cortical bone
#: nearly black, no signal from the patient table.
CONTRASTS: dict[str, dict[Tissue, float]] = {
    "T1": {Tissue.AIR: 0.0, Tissue.LUNG: 0.03, Tissue.FAT: 1.0, Tissue.MUSCLE: 0.35, Tissue.BOWEL_WALL: 0.38,
           Tissue.LIVER: 0.55, Tissue.SPLEEN: 0.40, Tissue.KIDNEY_CORTEX: 0.45, Tissue.KIDNEY_MEDULLA: 0.33,
           Tissue.BLOOD: 0.10, Tissue.FLUID: 0.10, Tissue.STOOL: 0.35, Tissue.CORTICAL_BONE: 0.03,
           Tissue.MARROW: 0.70, Tissue.DISC: 0.30, Tissue.CARTILAGE: 0.28, Tissue.TABLE: 0.0},
    "T2": {Tissue.AIR: 0.0, Tissue.LUNG: 0.02, Tissue.FAT: 0.65, Tissue.MUSCLE: 0.15, Tissue.BOWEL_WALL: 0.28,
           Tissue.LIVER: 0.22, Tissue.SPLEEN: 0.48, Tissue.KIDNEY_CORTEX: 0.52, Tissue.KIDNEY_MEDULLA: 0.62,
           Tissue.BLOOD: 0.08, Tissue.FLUID: 1.0, Tissue.STOOL: 0.35, Tissue.CORTICAL_BONE: 0.02,
           Tissue.MARROW: 0.45, Tissue.DISC: 0.70, Tissue.CARTILAGE: 0.25, Tissue.TABLE: 0.0},
}

#: Seed-sequence children (of the case seed) that draw the MR grid and the MR scan; children 0-2
#: draw the anatomy, its smooth fields and the image noise, child 3 a clinical CT geometry.
_GEOMETRY_STREAM = 4
_SCAN_STREAM = 5
#: The bias field: node spacing (mm) of its smooth field and where the field is clipped (std).
_BIAS_LENGTH_MM = 150.0
_BIAS_CLIP = 2.0


def _range(value: tuple[float, float], name: str, low_bound: float = 0.0) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low_bound <= low <= high:
        raise ValueError(f"MRConfig.{name} must be (low, high) with {low_bound:g} <= low <= high, got {value}")
    return low, high


@dataclass(frozen=True)
class MRScan:
    """What the scanner adds to one scan: ``signal`` per channel (relative signal of every
    :class:`Tissue`, indexed by its value), the global ``scale``, the bias strength ``bias``
    (``exp(bias * f)``), the noise standard deviation ``noise`` relative to a signal of 1 and
    the tissue texture ``texture`` (relative standard deviation)."""

    signal: dict[str, np.ndarray]
    scale: float
    bias: float
    noise: float
    texture: float


@dataclass(frozen=True)
class MRConfig:
    """How MR phantoms are scanned. Tuples of two are (low, high) ranges drawn per case.

    channels: the contrasts of every case, in channel order (keys of :data:`CONTRASTS`).
    fov_mm: field of view (z, y, x), as :class:`vox2vec_nnunet.phantoms.ct.PhantomConfig`'s.
    slice_mm, pixel_mm: slice spacing and in-plane pixel size (mm).
    scale: global intensity scale (log-uniform): the scanner's arbitrary unit.
    bias: strength ``b`` of the bias field ``exp(b f)``.
    noise: Rician noise standard deviation relative to a tissue of signal 1.
    tissue_jitter: every tissue's signal is multiplied by a factor within 1 +- this, per scan
        and channel.
    texture: relative standard deviation of a smooth texture inside the body.
    downsample: sample each scan on a grid this many times coarser along every axis (same
        field of view, subject, slice profile): small volumes for quick looks and tests.
    """

    channels: tuple[str, ...] = ("T2",)
    fov_mm: tuple[float, float, float] = (180.0, 260.0, 340.0)
    slice_mm: tuple[float, float] = (4.0, 6.0)
    pixel_mm: tuple[float, float] = (1.2, 2.0)
    scale: tuple[float, float] = (100.0, 3000.0)
    bias: tuple[float, float] = (0.1, 0.17)
    noise: tuple[float, float] = (0.015, 0.04)
    tissue_jitter: float = 0.1
    texture: float = 0.04
    downsample: int = 1

    def __post_init__(self) -> None:
        channels = tuple(self.channels)
        if not channels or len(set(channels)) != len(channels) or not set(channels) <= set(CONTRASTS):
            raise ValueError(f"MRConfig.channels must be distinct contrasts of {sorted(CONTRASTS)}, got {channels}")
        object.__setattr__(self, "channels", channels)
        if len(self.fov_mm) != 3:
            raise ValueError(f"MRConfig.fov_mm must have 3 entries (z, y, x), got {self.fov_mm!r}")
        object.__setattr__(self, "fov_mm", tuple(float(v) for v in self.fov_mm))
        fz, fy, fx = self.fov_mm
        need_y, need_x = MIN_FOV_YX_MM
        if fy < need_y or fx < need_x or not FOV_Z_RANGE_MM[0] <= fz <= FOV_Z_RANGE_MM[1]:
            raise ValueError(f"MRConfig.fov_mm={self.fov_mm}: in-plane at least {need_y:.0f} x {need_x:.0f} mm, "
                             f"cranio-caudal within {FOV_Z_RANGE_MM} mm (the modelled anatomy)")
        for name in ("slice_mm", "pixel_mm", "scale"):
            object.__setattr__(self, name, _range(getattr(self, name), name, low_bound=1e-6))
        for name in ("bias", "noise"):
            object.__setattr__(self, name, _range(getattr(self, name), name))
        if not 0.0 <= self.tissue_jitter < 1.0 or self.texture < 0.0:
            raise ValueError("MRConfig.tissue_jitter must be in [0, 1) and texture >= 0")
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"MRConfig.downsample must be a positive integer, got {self.downsample!r}")

    def case_geometry(self, seed: int) -> ScanGeometry:
        """The grid of subject ``seed``'s scan: slice spacing and pixel size drawn from their
        ranges (a stream of its own: the subject is the same as in CT), ``downsample`` applied.
        ``noise_std`` and ``texture_std`` (CT, HU) are 0: MR draws its own (:meth:`scan`)."""
        rng = np.random.default_rng(np.random.SeedSequence(check_seed(seed), spawn_key=(_GEOMETRY_STREAM,)))
        slice_mm, pixel_mm = float(rng.uniform(*self.slice_mm)), float(rng.uniform(*self.pixel_mm))
        native = (slice_mm, pixel_mm, pixel_mm)
        spacing = tuple(s * self.downsample for s in native)
        shape = tuple(max(2, int(round(f / s))) for f, s in zip(self.fov_mm, spacing))
        return ScanGeometry(shape=shape, spacing=spacing, psf_fwhm_mm=native, noise_std=0.0, texture_std=0.0)

    def scan(self, seed: int) -> MRScan:
        """What the scanner adds to subject ``seed``'s scan (a stream of its own)."""
        rng = np.random.default_rng(np.random.SeedSequence(check_seed(seed), spawn_key=(_SCAN_STREAM,)))
        low, high = self.scale
        scale = math.exp(rng.uniform(math.log(low), math.log(high)))
        bias, noise = float(rng.uniform(*self.bias)), float(rng.uniform(*self.noise))
        signal = {}
        for channel in self.channels:
            table = np.array([CONTRASTS[channel][t] for t in Tissue], dtype=np.float32)
            jitter = rng.uniform(1.0 - self.tissue_jitter, 1.0 + self.tissue_jitter, size=table.size)
            signal[channel] = (table * jitter).astype(np.float32)
        return MRScan(signal=signal, scale=scale, bias=bias, noise=noise, texture=self.texture)


def mr_slabs(subject: Subject, scan: MRScan) -> Iterator[tuple[slice, tuple[np.ndarray, ...], np.ndarray]]:
    """The MR scan of ``subject`` slab by slab (:meth:`Subject.slabs`): ``(slices, images,
    labels)``, one float32 image per channel of ``scan`` and the labels uint8.

    Per slab: the tissues' signal times the texture inside the body, blurred with the point
    spread function, the margin dropped, times the bias field and the scale; then, per
    channel, Rician noise.
    """
    geometry = subject.geometry
    for rows, keep in subject.slabs():
        texture = np.where(subject.body, 1.0 + scan.texture * subject.fields(30.0), 1.0).astype(np.float32)
        field = np.clip(subject.fields(_BIAS_LENGTH_MM)[keep], -_BIAS_CLIP, _BIAS_CLIP)
        gain = (scan.scale * np.exp(scan.bias * field)).astype(np.float32)
        sigma = np.float32(scan.noise * scan.scale)
        images = []
        for signal in scan.signal.values():
            image = ndimage.gaussian_filter(signal[subject.tissues] * texture, geometry.psf_sigma_voxels)[keep]
            image *= gain
            image += sigma * subject.noise_rng.standard_normal(image.shape, dtype=np.float32)
            imaginary = sigma * subject.noise_rng.standard_normal(image.shape, dtype=np.float32)
            images.append(np.hypot(image, imaginary))
        yield rows, tuple(images), subject.labels[keep]


@dataclass(frozen=True)
class MRPhantom:
    """One subject scanned by MR: ``images`` float32 per channel name and ``labels`` uint8
    (those of the CT phantom on the same grid), (z, y, x); ``spacing`` mm, (z, y, x)."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    spacing: tuple[float, float, float]


def render_mr(seed: int, geometry: ScanGeometry, scan: MRScan) -> MRPhantom:
    """Subject ``seed`` scanned by MR on ``geometry`` with ``scan`` (deterministic)."""
    images = {channel: np.empty(geometry.shape, dtype=np.float32) for channel in scan.signal}
    labels = np.empty(geometry.shape, dtype=np.uint8)
    for rows, channel_rows, label_rows in mr_slabs(Subject(check_seed(seed), geometry), scan):
        for image, image_rows in zip(images.values(), channel_rows):
            image[rows] = image_rows
        labels[rows] = label_rows
    return MRPhantom(images=images, labels=labels, spacing=geometry.spacing)


def make_mr_phantom(seed: int, config: MRConfig = MRConfig()) -> MRPhantom:
    """Subject ``seed`` scanned as ``config`` draws it for that seed."""
    return render_mr(seed, config.case_geometry(seed), config.scan(seed))
