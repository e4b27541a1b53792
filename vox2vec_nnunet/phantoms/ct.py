"""The CT scanner of the phantoms: the painted subject as an image in Hounsfield units.

:class:`PhantomConfig` is the default scan (one small field of view for every case);
:func:`render_phantom` scans a subject with any :class:`vox2vec_nnunet.phantoms.geometry.ScanGeometry`
(:mod:`vox2vec_nnunet.phantoms.clinical` draws clinical ones).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vox2vec_nnunet.phantoms.anatomy import FOV_Z_RANGE_MM, MIN_FOV_YX_MM, Subject, check_seed
from vox2vec_nnunet.phantoms.geometry import ScanGeometry, origin_lps

#: Lowest value a CT scanner stores; air plus noise is clipped here as on real scanners.
MIN_HU = -1024.0


@dataclass(frozen=True)
class PhantomConfig:
    """How phantoms are sampled. Tuples are ordered (z, y, x) like the arrays.

    fov_mm: field of view; the default (180, 260, 340) is an abdominal scan from the lung
        bases to the lower lumbar spine with air around a body of 240-300 mm width.
    spacing: voxel size in mm; the default is a typical thick-slice abdominal series.
    noise_std: standard deviation (HU) of the in-plane correlated Gaussian image noise.
    texture_std: standard deviation (HU) of a smooth low-frequency texture inside the body
        (scanner non-uniformity and tissue heterogeneity).
    psf_fwhm_mm: full width at half maximum of the Gaussian point spread function.
    """

    fov_mm: tuple[float, float, float] = (180.0, 260.0, 340.0)
    spacing: tuple[float, float, float] = (5.0, 2.5, 2.5)
    noise_std: float = 15.0
    texture_std: float = 6.0
    psf_fwhm_mm: tuple[float, float, float] = (4.0, 1.5, 1.5)

    def __post_init__(self) -> None:
        for name in ("fov_mm", "spacing", "psf_fwhm_mm"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"PhantomConfig.{name} must have 3 entries (z, y, x), got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if min(self.spacing) <= 0:
            raise ValueError(f"PhantomConfig.spacing must be positive, got {self.spacing}")
        if min(self.psf_fwhm_mm) < 0 or self.noise_std < 0 or self.texture_std < 0:
            raise ValueError("PhantomConfig.psf_fwhm_mm, noise_std and texture_std must be >= 0")
        need_y, need_x = MIN_FOV_YX_MM
        fz, fy, fx = self.fov_mm
        if fy < need_y or fx < need_x:
            raise ValueError(f"PhantomConfig.fov_mm={self.fov_mm}: the in-plane field of view must be "
                             f"at least {need_y:.0f} x {need_x:.0f} mm (y, x) to hold the largest body "
                             f"with air around it")
        if not FOV_Z_RANGE_MM[0] <= fz <= FOV_Z_RANGE_MM[1]:
            raise ValueError(f"PhantomConfig.fov_mm={self.fov_mm}: the cranio-caudal field of view must "
                             f"lie in {FOV_Z_RANGE_MM} mm (the modelled anatomy spans the lung bases to "
                             f"the lower lumbar spine)")
        if any(f < 2 * s for f, s in zip(self.fov_mm, self.spacing)):
            raise ValueError(f"PhantomConfig: spacing {self.spacing} is too coarse for fov_mm {self.fov_mm}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x): the field of view divided by the spacing, rounded."""
        return tuple(int(round(f / s)) for f, s in zip(self.fov_mm, self.spacing))

    def case_geometry(self, seed: int) -> ScanGeometry:
        """The scan of every case: this field of view centred on the subject (``seed`` unused;
        :class:`vox2vec_nnunet.phantoms.clinical.ClinicalConfig` draws one per case)."""
        return ScanGeometry(shape=self.shape, spacing=self.spacing, psf_fwhm_mm=self.psf_fwhm_mm,
                            noise_std=self.noise_std, texture_std=self.texture_std)


@dataclass(frozen=True)
class Phantom:
    """One synthetic subject: ``image`` float32 HU and ``labels`` uint8 (values of
    PHANTOM_LABELS), both (z, y, x) in the orientation of :mod:`vox2vec_nnunet.phantoms.geometry`;
    ``spacing`` in mm, (z, y, x); ``centre_mm`` the patient-frame position of the volume's
    centre (z, y, x)."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def origin_lps(self) -> tuple[float, float, float]:
        """World position (x, y, z), LPS mm, of voxel (0, 0, 0)."""
        return origin_lps(self.image.shape, self.spacing, self.centre_mm)


def ct_slabs(subject: Subject) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """The scan of ``subject`` slab by slab (:meth:`Subject.slabs`): ``(slices, image, labels)``,
    the image in float32 HU and the labels uint8.

    Each slab adds the low-frequency texture inside the body (and the table) to the painted
    intensities, blurs with the point spread function, drops the margin, adds in-plane
    correlated noise and clips at the scanner's lower bound.
    """
    geometry = subject.geometry
    for rows, keep in subject.slabs():
        image = subject.image + np.where(subject.body, geometry.texture_std * subject.fields(30.0), 0.0)
        image = ndimage.gaussian_filter(image.astype(np.float32), geometry.psf_sigma_voxels)
        image, labels = image[keep], subject.labels[keep]
        noise = subject.noise_rng.standard_normal(image.shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, (0.0, _NOISE_SIGMA_VOXELS, _NOISE_SIGMA_VOXELS))
        image += noise * (geometry.noise_std / _NOISE_STD_AFTER_FILTER)
        np.maximum(image, MIN_HU, out=image)
        yield rows, image, labels


def _noise_std_after_filter() -> float:
    """Standard deviation of unit white noise after the in-plane Gaussian filter of :func:`ct_slabs`."""
    delta = np.zeros(4 * int(4 * _NOISE_SIGMA_VOXELS + 1) + 1)
    delta[delta.size // 2] = 1.0
    weights = ndimage.gaussian_filter1d(delta, _NOISE_SIGMA_VOXELS)
    return float(np.sum(weights ** 2))  # sqrt(sum w^2) per in-plane axis


_NOISE_SIGMA_VOXELS = 0.6
_NOISE_STD_AFTER_FILTER = _noise_std_after_filter()


def render_phantom(seed: int, geometry: ScanGeometry) -> Phantom:
    """Subject ``seed`` scanned with ``geometry`` (see :class:`Subject` for what is drawn, in which
    order). Deterministic; the anatomy is drawn in millimetres of the patient frame, so one
    seed is one subject at any spacing and field of view. Drawn in slabs of slices: the
    working memory beyond the returned arrays (5 bytes per voxel) is bounded."""
    image = np.empty(geometry.shape, dtype=np.float32)
    labels = np.empty(geometry.shape, dtype=np.uint8)
    for rows, image_rows, label_rows in ct_slabs(Subject(check_seed(seed), geometry)):
        image[rows], labels[rows] = image_rows, label_rows
    return Phantom(image=image, labels=labels, spacing=geometry.spacing, centre_mm=geometry.centre_mm)


def make_phantom(seed: int, config: PhantomConfig = PhantomConfig()) -> Phantom:
    """Draw one subject (see :class:`Subject` for what is drawn, in which order). Deterministic
    for ``seed``; the anatomy (sizes, positions, shapes, intensities) is drawn in
    millimetres, so one seed is one subject at any ``config.spacing``."""
    return render_phantom(check_seed(seed), config.case_geometry(seed))
