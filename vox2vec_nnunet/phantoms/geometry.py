"""Where a phantom is scanned: the voxel grid in the patient frame, the patient table.

Geometry and orientation
------------------------
Arrays are laid out (z, y, x), slice axis first, as nnU-Net's SimpleITK reader returns them.
The written images use SimpleITK's identity direction, i.e. LPS world axes:

* +x (last array axis, increasing column) = patient **left**,
* +y (middle axis, increasing row)        = patient **posterior**,
* +z (first axis, increasing slice)       = patient **superior** (cranial).

So ``imshow(image[k])`` with the default upper-left origin is the usual radiological axial
display: anterior at the top, patient right on the image left. The world origin is the
centre of the volume; anatomy is modelled in millimetres in that frame, so one seed gives
the same subject at any voxel spacing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class PatientTable:
    """A curved CT table under the patient, in the patient frame (mm, +y posterior).

    From the patient down: a foam mattress (``pad_hu``, below -500 HU, i.e. air for the body
    mask), then the table: a sandwich of two carbon-fibre shells (``shell_hu``) around a foam
    core (``core_hu``), closed at the sides. The cradle is curved: its top surface lies at
    ``top_y_mm`` under ``centre_x_mm`` and rises (towards anterior) as ``u^2 / (2 radius)`` at a
    lateral distance ``u``. It runs along the whole scan and is never painted inside the body.
    """

    centre_x_mm: float
    top_y_mm: float
    radius_mm: float
    width_mm: float
    thickness_mm: float
    shell_mm: float
    shell_hu: float
    core_hu: float
    pad_mm: float
    pad_hu: float


@dataclass(frozen=True)
class ScanGeometry:
    """How one subject is scanned and reconstructed. Tuples are (z, y, x), millimetres.

    shape, spacing: the voxel grid written to disk.
    centre_mm: position of the grid's centre in the patient frame (the frame the anatomy is
        modelled in, module docstring); (0, 0, 0) centres the scan on the subject.
    body_scale: the subject's size relative to the anatomy model (a child is about 0.65);
        every length of the anatomy is multiplied by it.
    extra_fat_mm: subcutaneous fat added all around the body wall (large adults).
    table: the patient table, or None.
    psf_fwhm_mm, noise_std, texture_std: as in :class:`vox2vec_nnunet.phantoms.ct.PhantomConfig`
        (noise_std and texture_std in HU: CT only, 0 in MR grids).
    outline_margin: in-plane voxels (y before, y after, x before, x after) beyond the grid on
        which the body outline is drawn too: where the body crosses the field of view, the fat
        and muscle layers are then measured from the real skin, not from the image border.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    body_scale: float = 1.0
    extra_fat_mm: float = 0.0
    table: PatientTable | None = None
    psf_fwhm_mm: tuple[float, float, float] = (4.0, 1.5, 1.5)
    noise_std: float = 15.0
    texture_std: float = 6.0
    outline_margin: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"ScanGeometry.shape must be 3 positive sizes (z, y, x), got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"ScanGeometry.spacing must be 3 positive sizes (z, y, x), got {self.spacing}")
        if self.body_scale <= 0 or self.extra_fat_mm < 0 or min(self.outline_margin) < 0:
            raise ValueError("ScanGeometry: body_scale must be > 0, extra_fat_mm and outline_margin >= 0")

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        """Extent of the grid (z, y, x): shape times spacing."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing))

    @property
    def outline_shape(self) -> tuple[int, int, int]:
        """Shape of the grid the body outline is drawn on: ``shape`` plus ``outline_margin``."""
        ylo, yhi, xlo, xhi = self.outline_margin
        return self.shape[0], self.shape[1] + ylo + yhi, self.shape[2] + xlo + xhi

    @property
    def crop(self) -> tuple[slice, slice]:
        """The (y, x) slices of the grid inside the outline grid."""
        ylo, _, xlo, _ = self.outline_margin
        return slice(ylo, ylo + self.shape[1]), slice(xlo, xlo + self.shape[2])

    def outline_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient-frame coordinates (mm, float32 vectors) of the outline grid's voxel centres."""
        starts = (0, self.outline_margin[0], self.outline_margin[2])
        return tuple((np.arange(n, dtype=np.float32) - (start + (size - 1) / 2)) * s + c
                     for n, start, size, s, c in zip(self.outline_shape, starts, self.shape, self.spacing,
                                                     self.centre_mm))

    def with_spacing(self, spacing: tuple[float, float, float]) -> "ScanGeometry":
        """The same scan (field of view, centre, subject, table) on a grid of another spacing."""
        factors = [old / new for old, new in zip(self.spacing, spacing)]
        shape = tuple(max(1, int(round(n * f))) for n, f in zip(self.shape, factors))
        margin = tuple(int(math.ceil(m * factors[1 + i // 2])) for i, m in enumerate(self.outline_margin))
        return replace(self, shape=shape, spacing=tuple(float(s) for s in spacing), outline_margin=margin)

    @property
    def psf_sigma_voxels(self) -> list[float]:
        """Standard deviation (voxels, z, y, x) of the Gaussian point spread function."""
        return [f / 2.3548 / s for f, s in zip(self.psf_fwhm_mm, self.spacing)]


def origin_lps(shape: tuple[int, ...], spacing: tuple[float, ...], centre_mm: tuple[float, ...]
               ) -> tuple[float, float, float]:
    """World position (x, y, z), LPS mm, of voxel (0, 0, 0) of a (z, y, x) grid of ``shape`` and
    ``spacing`` centred at ``centre_mm`` (z, y, x)."""
    return tuple(c - (n - 1) / 2.0 * s for n, s, c in zip(shape[::-1], spacing[::-1], centre_mm[::-1]))
