"""Synthetic abdominal CT phantoms written as nnU-Net v2 raw datasets.

No public abdominal CT with organ labels can be had offline, so the project draws its own:
CT-like volumes in Hounsfield units with the usual CT tissue classes (air -1000,
fat about -100, soft tissue 30-60, contrast-enhanced vessels and kidney cortex 150-250, bone
400-1000, lung about -850, bowel gas) and an anatomy that varies between subjects. Organs that
vox2vec must tell apart share intensities on purpose -- liver and spleen are drawn from one
parenchyma value per subject, both kidneys share one cortex value, and unlabeled look-alikes
(inferior vena cava, iliac arteries, heart chambers, muscle) sit next to labeled structures --
so that position and context, not intensity alone, separate the classes, as in real CT
(the paper's abstract: representations that capture global semantics such as body part as
well as local semantics such as different small organs).

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

import json
import math
import multiprocessing
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

if TYPE_CHECKING:
    from vox2vec_nnunet.clinical_phantoms import ClinicalConfig

#: Label values of the phantoms (nnU-Net's ``dataset.json`` "labels" mapping). Everything not
#: listed -- body wall, fat, muscle, bone, lungs, bowel, stomach, heart, other vessels -- is 0.
PHANTOM_LABELS: dict[str, int] = {
    "background": 0,
    "liver": 1,
    "spleen": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "aorta": 5,
}

AIR_HU = -1000.0
#: Lowest value a CT scanner stores; air plus noise is clipped here as on real scanners.
MIN_HU = -1024.0

# Largest body the generator draws (half-axes in mm) plus the largest coordinate
# displacement (3 std of the smooth deformation); the field of view must hold them.
_BODY_HALF_X_MAX = 148.0
_BODY_HALF_Y_MAX = 116.0
_BODY_TAPER_MAX = 0.04
_DEFORM_STD_MM = 3.5
_DEFORM_MAX_MM = 3.0 * _DEFORM_STD_MM
_MARGIN_MM = 3.0
# Beyond this distance from z = 0 the body outline stops tapering (long clinical scans).
_TAPER_Z_MM = 130.0
# Organs are ellipsoids whose squared normalised radius is tested against at most 1 + 0.15 x a
# unit-variance field; it is computed only where it is below this value.
_ELLIPSOID_REACH = 3.0
# Voxels (including the margins of slices) drawn at once: about 0.1 kB of working memory each.
_CHUNK_VOXELS = 2 ** 23
# The anatomy is modelled from above the diaphragm domes down to the lower lumbar spine.
_FOV_Z_RANGE_MM = (150.0, 260.0)


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
        need_y = 2.0 * (_BODY_HALF_Y_MAX + _DEFORM_MAX_MM + _MARGIN_MM)
        need_x = 2.0 * (_BODY_HALF_X_MAX * (1.0 + _BODY_TAPER_MAX) + _DEFORM_MAX_MM + _MARGIN_MM)
        fz, fy, fx = self.fov_mm
        if fy < need_y or fx < need_x:
            raise ValueError(f"PhantomConfig.fov_mm={self.fov_mm}: the in-plane field of view must be "
                             f"at least {need_y:.0f} x {need_x:.0f} mm (y, x) to hold the largest body "
                             f"with air around it")
        if not _FOV_Z_RANGE_MM[0] <= fz <= _FOV_Z_RANGE_MM[1]:
            raise ValueError(f"PhantomConfig.fov_mm={self.fov_mm}: the cranio-caudal field of view must "
                             f"lie in {_FOV_Z_RANGE_MM} mm (the modelled anatomy spans the lung bases to "
                             f"the lower lumbar spine)")
        if any(f < 2 * s for f, s in zip(self.fov_mm, self.spacing)):
            raise ValueError(f"PhantomConfig: spacing {self.spacing} is too coarse for fov_mm {self.fov_mm}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x): the field of view divided by the spacing, rounded."""
        return tuple(int(round(f / s)) for f, s in zip(self.fov_mm, self.spacing))

    def case_geometry(self, seed: int) -> "ScanGeometry":
        """The scan of every case: this field of view centred on the subject (``seed`` unused;
        :class:`vox2vec_nnunet.clinical_phantoms.ClinicalConfig` draws one per case)."""
        return ScanGeometry(shape=self.shape, spacing=self.spacing, psf_fwhm_mm=self.psf_fwhm_mm,
                            noise_std=self.noise_std, texture_std=self.texture_std)


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
    psf_fwhm_mm, noise_std, texture_std: as in :class:`PhantomConfig`.
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


@dataclass(frozen=True)
class Phantom:
    """One synthetic subject: ``image`` float32 HU and ``labels`` uint8 (values of
    PHANTOM_LABELS), both (z, y, x) in the orientation the module docstring describes;
    ``spacing`` in mm, (z, y, x); ``centre_mm`` the patient-frame position of the volume's
    centre (z, y, x)."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def origin_lps(self) -> tuple[float, float, float]:
        """World position (x, y, z), LPS mm, of voxel (0, 0, 0)."""
        return _origin_lps(self.image.shape, self.spacing, self.centre_mm)


def _origin_lps(shape: tuple[int, ...], spacing: tuple[float, ...], centre_mm: tuple[float, ...]
                ) -> tuple[float, float, float]:
    return tuple(c - (n - 1) / 2.0 * s for n, s, c in zip(shape[::-1], spacing[::-1], centre_mm[::-1]))


# ----------------------------------------------------------------------------- sampling helpers


class _Fields:
    """Smooth random fields with unit standard deviation, defined in millimetres over the field
    of view (noise on a node grid of about ``length_mm`` spacing, cubic-spline interpolated to
    the voxel grid), so a seed gives the same fields at every voxel spacing.

    The k-th call of a subject draws the k-th field once and keeps its nodes, so that every
    z-chunk of the volume (``rows``) evaluates the same fields; their mean and standard
    deviation are those over the whole grid, computed exactly on the node grid. Calls return
    the field on the in-plane ``crop`` of the grid; :meth:`whole_plane` on all of it.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int],
                 extent_mm: tuple[float, float, float], crop: tuple[slice, slice]) -> None:
        self._rng = rng
        self._shape = shape
        self._extent_mm = extent_mm
        self._crop = crop
        self._drawn: list[tuple[np.ndarray, tuple[np.ndarray, ...], float, float]] = []
        self._calls = 0
        self.rows = slice(None)

    def start(self, rows: slice) -> None:
        """Evaluate the following calls on the z-rows ``rows`` of the grid, from the first field."""
        self.rows = rows
        self._calls = 0

    def _draw(self, length_mm: float) -> tuple[np.ndarray, tuple[np.ndarray, ...], float, float]:
        nodes = [max(2, int(math.ceil(f / length_mm)) + 1) for f in self._extent_mm]
        noise = self._rng.standard_normal(nodes).astype(np.float32)
        # Cubic-spline zoom is separable: one (voxels x nodes) matrix per axis, obtained by
        # zooming the identity, applied by tensor contraction (far cheaper than a 3D zoom).
        matrices = tuple(ndimage.zoom(np.eye(c, dtype=np.float32), (n / c, 1.0), order=3, mode="nearest")
                         for n, c in zip(self._shape, nodes))
        # Over the whole grid: mean = s_z s_y s_x . noise with s the column means, and the
        # mean square = noise . (G_z G_y G_x noise) with G = M^T M / voxels, per axis.
        mz, my, mx = (m.astype(np.float64) for m in matrices)
        n64 = noise.astype(np.float64)
        mean = float(np.einsum("i,j,k,ijk->", mz.mean(axis=0), my.mean(axis=0), mx.mean(axis=0), n64))
        gz, gy, gx = (m.T @ m / m.shape[0] for m in (mz, my, mx))
        smoothed = np.tensordot(gz, np.matmul(gy, n64 @ gx), axes=(1, 0))
        mean_square = float(np.sum(n64 * smoothed))
        return noise, matrices, mean, math.sqrt(max(mean_square - mean ** 2, 0.0))

    def _evaluate(self, index: int, crop: tuple[slice, slice]) -> np.ndarray:
        noise, (mz, my, mx), mean, std = self._drawn[index]
        field = np.einsum("ai,bj,ck,ijk->abc", mz[self.rows], my[crop[0]], mx[crop[1]], noise, optimize=True)
        field -= np.float32(mean)
        field /= max(std, 1e-6)
        return field

    def __call__(self, length_mm: float) -> np.ndarray:
        if self._calls == len(self._drawn):
            self._drawn.append(self._draw(length_mm))
        self._calls += 1
        return self._evaluate(self._calls - 1, self._crop)

    def whole_plane(self, index: int) -> np.ndarray:
        """Field number ``index`` (call order, already drawn) on the whole plane of the grid."""
        return self._evaluate(index, (slice(None), slice(None)))


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    """One uniform draw as a Python float."""
    return float(rng.uniform(low, high))


def _ellipsoid(z: np.ndarray, y: np.ndarray, x: np.ndarray, center: tuple[float, float, float],
               radii: tuple[float, float, float], yaw_deg: float = 0.0,
               tilt_deg: float = 0.0) -> np.ndarray:
    """Squared normalised radius of an ellipsoid (< 1 inside). ``center``/``radii`` are (z, y, x)
    mm; ``yaw_deg`` turns the ellipsoid's x axis towards +y in the axial plane, ``tilt_deg``
    then turns it towards +z (coronal tilt)."""
    cz, cy, cx = center
    rz, ry, rx = radii
    dz, dy, dx = z - cz, y - cy, x - cx
    a, t = math.radians(yaw_deg), math.radians(tilt_deg)
    u = math.cos(a) * dx + math.sin(a) * dy
    v = -math.sin(a) * dx + math.cos(a) * dy
    w = -math.sin(t) * u + math.cos(t) * dz
    u = math.cos(t) * u + math.sin(t) * dz
    return (u / rx) ** 2 + (v / ry) ** 2 + (w / rz) ** 2


def _distance_to_segment(z: np.ndarray, y: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) from every voxel to the segment from ``a`` to ``b`` ((z, y, x) mm)."""
    d = b - a
    t = ((z - a[0]) * d[0] + (y - a[1]) * d[1] + (x - a[2]) * d[2]) / float(d @ d)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((z - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (x - a[2] - t * d[2]) ** 2)


def _depth_below_surface(body: np.ndarray, spacing: tuple[float, float], crop: tuple[slice, slice]) -> np.ndarray:
    """In-plane distance (mm) of each voxel of a body slice to the nearest voxel outside it,
    on the ``crop`` of the slice. Computed on the body's bounding box plus one voxel: the
    nearest outside voxel of a body voxel always lies in that box (the box's frame is all
    outside), so the values are those of the whole slice."""
    depth = np.zeros(body.shape, dtype=np.float64)
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    if rows.size:
        box = (slice(max(0, rows[0] - 1), rows[-1] + 2), slice(max(0, cols[0] - 1), cols[-1] + 2))
        depth[box] = ndimage.distance_transform_edt(body[box], sampling=spacing)
    return depth[crop]


# ----------------------------------------------------------------------------- the phantom


@dataclass(frozen=True)
class _Tissues:
    """Intensities (HU) of one subject. Liver and spleen share one parenchyma value and the
    kidneys one cortex value (context, not intensity, must separate them: docs/method.md,
    "What a small CPU run can show")."""

    fat: float
    visceral_fat: float
    muscle: float
    liver: float
    spleen: float
    kidney_cortex: float
    kidney_medulla: float
    aorta: float
    vein: float
    lung: float
    cortical_bone: float
    cancellous_bone: float
    fluid: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "_Tissues":
        fat = _u(rng, -115, -85)
        parenchyma = _u(rng, 50, 70)
        cortex = _u(rng, 150, 250)
        # Corticomedullary phase (dark medulla) or nephrographic phase (uniform kidney).
        medulla = cortex - (_u(rng, 50, 100) if rng.random() < 0.5 else _u(rng, 0, 15))
        return cls(fat=fat, visceral_fat=fat + _u(rng, 5, 25), muscle=_u(rng, 35, 50),
                   liver=parenchyma + _u(rng, -2, 2), spleen=parenchyma + _u(rng, -2, 2),
                   kidney_cortex=cortex, kidney_medulla=medulla, aorta=_u(rng, 150, 250),
                   vein=_u(rng, 100, 160), lung=_u(rng, -870, -830), cortical_bone=_u(rng, 700, 1000),
                   cancellous_bone=_u(rng, 250, 400), fluid=_u(rng, 0, 25))


class _Subject:
    """Paints one subject structure by structure (``anatomy``), back to front: body wall, back
    muscles, thorax above the diaphragm, bowel and stomach, solid organs, psoas and kidneys,
    great vessels, spine, ribs; each paint overwrites the tissue and label under it. The
    cranio-caudal landmarks and the spine frame are drawn first, as the organs hang from them.

    Coordinates are millimetres of the anatomy model (the patient frame divided by the
    geometry's ``body_scale``; module docstring). Soft tissue uses smoothly displaced
    coordinates ``zd, yd, xd`` (organic, subject-specific shapes); the skeleton and the great
    vessels use the undisplaced ``z, y, x``. Every quantity of the anatomy is a function of
    the position alone, so a volume is drawn in chunks of slices (:meth:`chunks`), each from
    the same random draws, with memory bounded by the chunk size whatever the scan's length.
    """

    def __init__(self, seed: int, geometry: ScanGeometry) -> None:
        self._anatomy_seq, field_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
        self.geometry = geometry
        scale = geometry.body_scale
        shape = geometry.outline_shape
        self.spacing = tuple(s / scale for s in geometry.spacing)
        self.fields = _Fields(np.random.default_rng(field_seq), shape,
                              tuple(n * s for n, s in zip(shape, self.spacing)), geometry.crop)
        self._noise = np.random.default_rng(noise_seq)
        z, y, x = geometry.outline_coordinates()
        self._outline_yx = (y / np.float32(scale), x / np.float32(scale))  # model mm
        self._patient = (z, y[geometry.crop[0]], x[geometry.crop[1]])
        self._model = tuple(c / np.float32(scale) for c in self._patient)

    def _start(self, rows: slice) -> None:
        """Fresh random streams and empty arrays for the z-rows ``rows`` of the grid."""
        self.rng = np.random.default_rng(self._anatomy_seq)
        self.fields.start(rows)
        z, y, x = self._model
        self.z, self.y, self.x = z[rows].reshape(-1, 1, 1), y.reshape(1, -1, 1), x.reshape(1, 1, -1)
        self.shape = (self.z.shape[0], y.size, x.size)
        self.zd, self.yd, self.xd = (
            c + np.clip(_DEFORM_STD_MM * self.fields(45.0), -_DEFORM_MAX_MM, _DEFORM_MAX_MM)
            for c in (self.z, self.y, self.x))
        self.bumps = self.fields(25.0)  # organ surface irregularity
        self.hu = _Tissues.draw(self.rng)
        self.image = np.full(self.shape, AIR_HU, dtype=np.float32)
        self.labels = np.zeros(self.shape, dtype=np.uint8)

    def paint(self, mask: np.ndarray, hu: float | np.ndarray, label: str = "background") -> None:
        """Set tissue and label where ``mask`` (broadcastable) holds; unlabeled tissue gets
        label 0, so the labels always describe the visible tissue."""
        mask = np.broadcast_to(mask, self.image.shape)
        self.image[mask] = np.broadcast_to(hu, self.image.shape)[mask] if isinstance(hu, np.ndarray) else hu
        self.labels[mask] = PHANTOM_LABELS[label]

    def _box(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box of the voxels whose displaced coordinates can lie between ``low`` and
        ``high`` ((z, y, x) mm), or None if there are none."""
        box = []
        for axis, lo, hi in zip((self.z, self.y, self.x), low, high):
            inside = np.flatnonzero((axis.ravel() >= lo - _DEFORM_MAX_MM) & (axis.ravel() <= hi + _DEFORM_MAX_MM))
            if inside.size == 0:
                return None
            box.append(slice(int(inside[0]), int(inside[-1]) + 1))
        return tuple(box)

    def ellipsoid(self, center: tuple[float, float, float], radii: tuple[float, float, float],
                  yaw_deg: float = 0.0, tilt_deg: float = 0.0) -> np.ndarray:
        """``_ellipsoid`` on the displaced coordinates, evaluated where it is at most 3 (every
        test against it thresholds lower), +inf elsewhere: only the box around the centre is
        computed."""
        result = np.full(self.shape, np.inf, dtype=np.float32)
        reach = math.sqrt(_ELLIPSOID_REACH) * max(radii)
        box = self._box(np.array(center) - reach, np.array(center) + reach)
        if box is not None:
            result[box] = _ellipsoid(self.zd[box], self.yd[box], self.xd[box], center, radii, yaw_deg, tilt_deg)
        return result

    def distance_to_polyline(self, points: np.ndarray, reach: float) -> np.ndarray:
        """Distance (mm) of the displaced coordinates to a polyline of (z, y, x) mm points where
        it is below ``reach``, +inf elsewhere: only boxes around the segments are computed."""
        best = np.full(self.shape, np.inf, dtype=np.float32)
        for a, b in zip(points[:-1], points[1:]):
            box = self._box(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
            if box is not None:
                np.minimum(best[box], _distance_to_segment(self.zd[box], self.yd[box], self.xd[box], a, b),
                           out=best[box])
        return best

    def anatomy(self) -> None:
        self.body_wall()
        self.landmarks()
        self.spine_frame()
        self.back_muscles()
        self.thorax()
        self.colon()
        self.small_bowel()
        self.stomach()
        self.liver()
        self.spleen()
        self.psoas()
        self.kidneys()
        self.great_vessels()
        self.spine()
        self.ribs()

    def body_wall(self) -> None:
        """Super-elliptic outline (flatter at the back, slightly tapered along z), subcutaneous
        fat thicker in front and in larger subjects, a muscle wall, visceral fat inside."""
        rng, yd, xd, extra = self.rng, self.yd, self.xd, self.geometry.extra_fat_mm
        self.cx, self.cy = _u(rng, -6, 6), _u(rng, -6, 6)
        self.ax = _u(rng, 120, _BODY_HALF_X_MAX)  # half width at z = 0, without extra fat
        self.taper = _u(rng, -_BODY_TAPER_MAX, _BODY_TAPER_MAX)  # relative change per 90 mm along z
        ax = (self.ax + extra) * (1.0 + self.taper * np.clip(self.z, -_TAPER_Z_MM, _TAPER_Z_MM) / 90.0)
        ay_front = _u(rng, 100, _BODY_HALF_Y_MAX)
        self.ay_front = ay_front + extra
        self.ay_back = ay_front * _u(rng, 0.78, 0.9) + extra
        p_front, p_back = _u(rng, 2.0, 2.4), _u(rng, 2.6, 3.4)
        outline_yd, outline_xd = yd, xd
        if any(self.geometry.outline_margin):  # the body crosses the field of view
            y, x = self._outline_yx
            outline_yd, outline_xd = (
                c + np.clip(_DEFORM_STD_MM * self.fields.whole_plane(index), -_DEFORM_MAX_MM, _DEFORM_MAX_MM)
                for index, c in ((1, y.reshape(1, -1, 1)), (2, x.reshape(1, 1, -1))))
        behind = outline_yd > self.cy
        across = (np.abs(outline_xd - self.cx) / ax).astype(np.float64)
        along = np.abs(outline_yd - self.cy).astype(np.float64)
        body = np.empty(behind.shape, dtype=bool)
        for side, p, radius_y in ((behind, p_back, self.ay_back), (~behind, p_front, self.ay_front)):
            body[side] = across[side] ** p + (along[side] / radius_y) ** p <= 1.0
        del across, along
        self.depth = np.stack([_depth_below_surface(s, self.spacing[1:], self.geometry.crop) for s in body])
        self.body = np.ascontiguousarray(body[(slice(None), *self.geometry.crop)])
        self.theta = np.arctan2(xd - self.cx, yd - self.cy)  # 0 at the posterior midline, +-pi in front
        self.fat_mm = _u(rng, 6, 14) + 0.55 * (self.ax - 120.0) + extra
        self.wall_mm = _u(rng, 8, 13)
        self.fat_local = self.fat_mm * (0.85 - 0.15 * np.cos(self.theta)) * (1.0 + 0.15 * self.fields(60.0))
        self.cavity = self.depth > self.fat_local + self.wall_mm
        self.paint(self.body, self.hu.fat)
        self.paint(self.body & (self.depth > self.fat_local), self.hu.muscle)
        self.paint(self.cavity, self.hu.visceral_fat)
        self.ax_in = self.ax + extra - self.fat_mm - self.wall_mm
        self.ay_in = self.ay_front - self.fat_mm - self.wall_mm

    def landmarks(self) -> None:
        """Cranio-caudal levels (mm): the diaphragm domes near the top of the field of view
        (the right one higher) and, below them, the centres of the liver's right lobe and of
        the spleen, the left kidney (the right one lies lower) and the top of the lumbar
        muscles (psoas, quadratus lumborum)."""
        rng = self.rng
        self.dome_right = _u(rng, 50, 70)
        self.dome_left = self.dome_right - _u(rng, 5, 15)
        self.liver_z = self.dome_right - _u(rng, 45, 60)
        self.spleen_z = self.dome_left - _u(rng, 30, 45)
        self.kidney_z = self.dome_left - _u(rng, 70, 85)
        self.psoas_top = self.kidney_z + _u(rng, 20, 50)

    def spine_frame(self) -> None:
        """Vertebral body centre line (gentle lordosis and lateral tilt) and the sizes of the
        posterior elements, which set how far the spine sits in front of the back skin."""
        rng, z = self.rng, self.z
        self.vb_rx, self.vb_ry = _u(rng, 19, 25), _u(rng, 15, 19)
        self.canal_r = _u(rng, 7, 9)
        self.spinous_len = _u(rng, 25, 35)
        d_back = self.vb_ry + 2 * self.canal_r + 2 + self.spinous_len + 0.7 * self.fat_mm + _u(rng, 8, 14)
        self.spine_x0 = self.cx + _u(rng, -4, 4)  # at z = 0
        self.spine_x = self.spine_x0 + _u(rng, -0.03, 0.03) * z
        self.spine_y0 = self.cy + self.ay_back - d_back
        self.spine_y = self.spine_y0 + _u(rng, -0.08, 0.08) * z

    def back_muscles(self) -> None:
        """Erector spinae from the laminae to the posterior wall beside the spinous processes,
        quadratus lumborum lateral to the transverse processes; the peritoneal and pleural
        cavities end in front of them."""
        rng, yd, xd, spine_x, spine_y = self.rng, self.yd, self.xd, self.spine_x, self.spine_y
        front = spine_y + self.vb_ry + 2 * self.canal_r
        back = self.cy + self.ay_back - 0.7 * self.fat_mm
        erector_y, erector_ry = (front + back) / 2, (back - front) / 2 + 4.0
        erector_rx = _u(rng, 24, 32)
        quadratus_ry, quadratus_rx = _u(rng, 10, 14), _u(rng, 14, 20)
        muscles = np.zeros(self.shape, dtype=bool)
        for side in (-1.0, 1.0):
            muscles |= (((yd - erector_y) / erector_ry) ** 2
                        + ((xd - spine_x - side * (erector_rx + 3.0)) / erector_rx) ** 2 < 1.0)
            muscles |= ((((yd - spine_y - self.vb_ry - 10.0) / quadratus_ry) ** 2
                         + ((xd - spine_x - side * (self.vb_rx + 1.5 * quadratus_rx)) / quadratus_rx) ** 2 < 1.0)
                        & (self.zd < self.psoas_top))
        # Ligaments and facet joints keep the viscera off the vertebral column at every level.
        x, y = self.x - spine_x, self.y - spine_y
        muscles |= (((x / (self.vb_rx + 3.0)) ** 2 + (y / (self.vb_ry + 3.0)) ** 2 < 1.0)
                    | (x ** 2 + (y - self.vb_ry - self.canal_r) ** 2 < (self.canal_r + 8.0) ** 2))
        muscles &= self.body & (self.depth > self.fat_local)
        self.paint(muscles, self.hu.muscle)
        self.cavity &= ~muscles

    def thorax(self) -> None:
        """Diaphragm of two domes (the right higher), lowest in the posterior recesses; lungs
        with small vessels above it, the mediastinum and the heart on the central tendon."""
        rng, yd, xd, hu = self.rng, self.yd, self.xd, self.hu
        dome_y = self.cy - 0.15 * self.ay_front
        curvature = _u(rng, 0.005, 0.007)
        self.diaphragm = np.maximum(
            self.dome_right - curvature * ((xd - (self.cx - 0.45 * self.ax_in)) ** 2 + (yd - dome_y) ** 2),
            self.dome_left - curvature * ((xd - (self.cx + 0.45 * self.ax_in)) ** 2 + (yd - dome_y) ** 2))
        self.abdomen = self.cavity & (self.zd < self.diaphragm)
        thorax = self.cavity & (self.zd > self.diaphragm + 5.0)
        self.paint(self.cavity & ~self.abdomen & ~thorax, hu.muscle)  # the diaphragm itself
        lung = hu.lung + 25.0 * self.fields(20.0)
        self.paint(thorax, np.where(self.fields(4.0) > 2.3, _u(rng, -150, 0), lung))
        self.paint(thorax & (np.abs(xd - self.spine_x - 5) < _u(rng, 18, 26)) & (yd < self.spine_y + self.vb_ry),
                   hu.visceral_fat)
        heart_c = (self.dome_left + _u(rng, 5, 20), self.cy - 0.35 * self.ay_front, self.cx + _u(rng, 10, 25))
        heart = self.ellipsoid(heart_c, (_u(rng, 45, 55), _u(rng, 38, 48), _u(rng, 55, 70)), yaw_deg=_u(rng, -30, -10))
        self.paint(thorax & (heart < 1.0), hu.muscle)
        self.paint(thorax & (heart < 0.45), 0.9 * hu.aorta)  # contrast in the chambers

    def colon(self) -> None:
        """A tube from the caecum up the right flank, across the front (transverse colon),
        down the left flank; mottled stool with gas."""
        rng, cy, cx, ax_in, ay_in = self.rng, self.cy, self.cx, self.ax_in, self.ay_in
        flexure_r = self.liver_z - _u(rng, 20, 40)
        flexure_l = self.spleen_z - _u(rng, 5, 20)
        path = np.array([
            (-130.0, -0.05 * ay_in, -0.6 * ax_in), (flexure_r - 20, 0.0, -0.62 * ax_in),
            (flexure_r, -0.35 * ay_in, -0.5 * ax_in), (_u(rng, -45, -10), -0.62 * ay_in, 0.0),
            (flexure_l, -0.2 * ay_in, 0.55 * ax_in), (flexure_l - 40, 0.15 * ay_in, 0.62 * ax_in),
            (-130.0, 0.1 * ay_in, 0.6 * ax_in)])
        path[:, 1:] += np.array([cy, cx])
        path += rng.uniform(-8, 8, size=path.shape)
        radius = _u(rng, 14, 21)
        distance = self.distance_to_polyline(path, radius)
        self.colon_mask = self.abdomen & (distance < radius)
        stool = np.where(self.fields(8.0) > _u(rng, 0.0, 0.8), AIR_HU, _u(rng, -120, 0) + 40.0 * self.fields(5.0))
        self.paint(self.colon_mask, self.hu.muscle + 10.0)
        self.paint(self.colon_mask & (distance < radius - 3.0), stool)

    def small_bowel(self) -> None:
        """Serpiginous loops around the zero level set of a smooth field, in front of the
        spine and below the upper abdomen: enhancing wall, fluid, gas in some loops."""
        rng = self.rng
        loops, gas = np.abs(self.fields(30.0)), self.fields(30.0)
        zone = (self.abdomen & ~self.colon_mask & (self.yd < self.spine_y - 0.5 * self.vb_ry)
                & (self.zd < self.diaphragm - 35.0))
        width = _u(rng, 0.35, 0.5)
        self.paint(zone & (loops < width), _u(rng, 70, 110))
        lumen = zone & (loops < 0.6 * width)
        self.paint(lumen, self.hu.fluid)
        self.paint(lumen & (gas > _u(rng, 0.8, 1.4)) & (loops < 0.4 * width), AIR_HU)

    def stomach(self) -> None:
        """Left upper quadrant, fluid with an air-fluid level (supine: gas in front)."""
        rng = self.rng
        center = (self.spleen_z - _u(rng, 0, 20), self.cy - self.ay_in * _u(rng, 0.25, 0.45),
                  self.cx + self.ax_in * _u(rng, 0.2, 0.4))
        radii = (_u(rng, 35, 50), _u(rng, 25, 35), _u(rng, 35, 50))
        stomach = self.abdomen & (self.ellipsoid(center, radii, yaw_deg=_u(rng, -35, 0)) < 1.0 + 0.15 * self.bumps)
        self.paint(stomach, self.hu.muscle)
        lumen = ndimage.binary_erosion(stomach)
        self.paint(lumen, self.hu.fluid + 5.0)
        self.paint(lumen & (self.yd < center[1] - radii[1] * _u(rng, 0.1, 0.8)), AIR_HU)

    def liver(self) -> None:
        """Right lobe under the right dome plus a left lobe reaching across the midline in
        front; a gallbladder (unlabeled fluid) under the right lobe in most subjects."""
        rng, cy, cx, ax_in, ay_in = self.rng, self.cy, self.cx, self.ax_in, self.ay_in
        right = self.ellipsoid((self.liver_z, cy + ay_in * _u(rng, -0.15, 0.05), cx - ax_in * _u(rng, 0.45, 0.55)),
                               (_u(rng, 70, 85), _u(rng, 75, 90), _u(rng, 62, 78)),
                               yaw_deg=_u(rng, -15, 15), tilt_deg=_u(rng, 0, 15))
        left = self.ellipsoid((self.dome_left - _u(rng, 10, 25), cy - ay_in * _u(rng, 0.35, 0.5), cx + _u(rng, -5, 15)),
                              (_u(rng, 28, 36), _u(rng, 22, 32), _u(rng, 45, 60)), yaw_deg=_u(rng, -20, 10))
        # The liver stays out of the paravertebral gutters (the retroperitoneum beside and
        # behind the vertebral bodies); in front of them lie the caudate lobe and the IVC.
        gutter = (np.abs(self.xd - self.spine_x) < self.vb_rx + 25.0) & (self.yd > self.spine_y - self.vb_ry)
        liver = (self.abdomen & ~gutter & (np.minimum(right, left) < 1.0 + 0.12 * self.bumps)
                 & (self.zd < self.diaphragm - 2.0))
        self.paint(liver, self.hu.liver, "liver")
        if rng.random() < 0.75:
            gallbladder = self.ellipsoid(
                (self.liver_z - _u(rng, 25, 45), cy - ay_in * _u(rng, 0.25, 0.4), cx - ax_in * _u(rng, 0.1, 0.3)),
                (_u(rng, 25, 35), _u(rng, 12, 18), _u(rng, 12, 18)), yaw_deg=_u(rng, -30, 30))
            self.paint(self.abdomen & (gallbladder < 1.0), _u(rng, 0, 20))

    def spleen(self) -> None:
        """Crescent along the left posterolateral wall: an ellipsoid whose long axis follows
        the wall, hollowed on the medial (hilar) side."""
        rng = self.rng
        yaw = _u(rng, 30, 60)
        center = (self.spleen_z, self.cy + self.ay_in * _u(rng, 0.1, 0.35), self.cx + self.ax_in * _u(rng, 0.6, 0.7))
        radii = (_u(rng, 45, 60), _u(rng, 45, 60), _u(rng, 20, 27))  # height, length, thickness
        a = math.radians(yaw)
        hilum = (center[0], center[1] - 1.6 * radii[2] * math.sin(a), center[2] - 1.6 * radii[2] * math.cos(a))
        spleen = ((self.ellipsoid(center, radii, yaw_deg=yaw) < 1.0 + 0.1 * self.bumps)
                  & (self.ellipsoid(hilum, (0.5 * radii[0], 0.5 * radii[1], radii[2]), yaw_deg=yaw) > 1.0))
        self.paint(self.abdomen & spleen & (self.zd < self.diaphragm - 2.0), self.hu.spleen, "spleen")

    def psoas(self) -> None:
        """Psoas muscles beside the lumbar vertebral bodies, thickening caudally."""
        radius = np.clip(4.0 + 0.14 * (self.psoas_top - self.z), 0.0, 22.0)
        for side in (-1.0, 1.0):
            psoas = (((self.xd - self.spine_x - side * (self.vb_rx + 0.8 * radius)) ** 2
                      + ((self.yd - self.spine_y - 3.0) / 0.9) ** 2 < radius ** 2) & (radius > 3.0))
            self.paint(self.abdomen & psoas, self.hu.muscle)

    def kidneys(self) -> None:
        """Beside the spine in perirenal fat, the right one lower (under the liver), upper
        poles tilted medially: enhancing cortex, medulla, and a fat-filled sinus opening to
        the anteromedial hilum (unlabeled, as in organ segmentation datasets)."""
        rng = self.rng
        right_z = self.kidney_z - _u(rng, 5, 15)
        self.kidney_centres = []
        for name, side, kz in (("kidney_left", 1.0, self.kidney_z), ("kidney_right", -1.0, right_z)):
            yaw, tilt = side * _u(rng, 25, 45), side * _u(rng, 5, 15)
            center = (kz, self.spine_y0 + _u(rng, -10, 5), self.spine_x0 + side * _u(rng, 50, 62))
            self.kidney_centres.append(center)
            radii = (_u(rng, 48, 58), _u(rng, 17, 22), _u(rng, 24, 30))  # length, thickness, width
            q = self.ellipsoid(center, radii, yaw, tilt)
            # A thin fat rim around the kidney, a wider one where no organ lies.
            self.paint(self.abdomen & ((q < 1.15) | ((q < 1.5) & (self.labels == 0))),
                       self.hu.fat + _u(rng, 0, 15))
            kidney = self.abdomen & (q < 1.0 + 0.05 * self.bumps) & (self.zd < self.diaphragm - 2.0)
            self.paint(kidney, self.hu.kidney_cortex, name)
            self.paint(kidney & (q < (1.0 - 7.0 / radii[2]) ** 2), self.hu.kidney_medulla, name)
            medial = (-side * math.cos(math.radians(yaw)), -side * math.sin(math.radians(yaw)))  # (x, y)
            sinus_c = (kz, center[1] + 0.8 * radii[2] * medial[1], center[2] + 0.8 * radii[2] * medial[0])
            sinus = self.ellipsoid(sinus_c, (0.5 * radii[0], 0.45 * radii[1], 0.5 * radii[2]), yaw, tilt) < 1.0
            self.paint(self.abdomen & sinus & (q < 1.5), self.hu.fat + _u(rng, 10, 30))

    def great_vessels(self) -> None:
        """Aorta left of the midline just in front of the vertebral bodies, bifurcating low
        into the (unlabeled) iliac arteries; the inferior vena cava on the right, passing
        through the back of the liver. Undisplaced coordinates: they follow the spine."""
        rng, z, y, x, spine_x, spine_y = self.rng, self.z, self.y, self.x, self.spine_x, self.spine_y
        radius = _u(rng, 9, 13) * (1.0 + 0.05 * z / 90.0)
        sway = _u(rng, 0, 3) * np.sin(2 * np.pi * z / _u(rng, 120, 240) + _u(rng, 0, 2 * np.pi))
        aorta_x = spine_x + _u(rng, 6, 15) + sway
        aorta_y = spine_y - self.vb_ry - radius - _u(rng, 1, 4)
        bifurcation = _u(rng, -120, -50)
        above = z >= bifurcation
        self.paint(self.body & above & ((x - aorta_x) ** 2 + (y - aorta_y) ** 2 < radius ** 2), self.hu.aorta, "aorta")
        spread = math.tan(math.radians(_u(rng, 20, 30))) * (bifurcation - z)
        for side in (-1.0, 1.0):
            iliac = (x - spine_x - side * (2.0 + spread)) ** 2 + (y - aorta_y) ** 2 < (0.7 * radius) ** 2
            self.paint(self.body & ~above & iliac, self.hu.aorta)
        ivc_rx, ivc_ry = _u(rng, 11, 15), _u(rng, 7, 11)
        ivc_x = spine_x - _u(rng, 18, 28)
        ivc_y = spine_y - self.vb_ry - ivc_ry - _u(rng, 4, 10)
        self.paint(self.body & (((x - ivc_x) / ivc_rx) ** 2 + ((y - ivc_y) / ivc_ry) ** 2 < 1.0), self.hu.vein)

    def spine(self) -> None:
        """Vertebral bodies (cortical rim, cancellous core) separated by discs; neural arch
        around the canal, spinous and transverse processes."""
        rng, z, y, x, spine_x, spine_y, hu = self.rng, self.z, self.y, self.x, self.spine_x, self.spine_y, self.hu
        period = _u(rng, 30, 36)
        disc = _u(rng, 0.22, 0.3)
        level = np.mod(z - _u(rng, 0, period), period) / period  # 0..1 within one vertebra and disc
        vertebra = level >= disc
        q = ((x - spine_x) / self.vb_rx) ** 2 + ((y - spine_y) / self.vb_ry) ** 2
        self.paint(q < 1.0, np.where(vertebra, hu.cortical_bone, _u(rng, 70, 100)))
        self.paint((q < (1.0 - 3.0 / self.vb_ry) ** 2) & vertebra, hu.cancellous_bone)
        canal_r = self.canal_r
        canal_y = spine_y + self.vb_ry + canal_r + 1.0
        canal_d = np.sqrt((x - spine_x) ** 2 + (y - canal_y) ** 2)
        arch_hu = 0.5 * (hu.cortical_bone + hu.cancellous_bone)
        self.paint((canal_d < canal_r + 5.0) & (y > spine_y) & vertebra, arch_hu)
        self.paint(canal_d < canal_r, _u(rng, 0, 15))
        self.paint((np.abs(x - spine_x) < 3.0) & (y > canal_y + canal_r) & (y < canal_y + canal_r + self.spinous_len)
                   & (level > disc + 0.1) & (level < 0.9), arch_hu)
        transverse_len = _u(rng, 15, 25)
        self.paint((np.abs(y - canal_y + 2.0) < 3.0) & (np.abs(x - spine_x) > canal_r + 2.0)
                   & (np.abs(x - spine_x) < canal_r + 5.0 + transverse_len)
                   & (level > disc + 0.2) & (level < 0.75), arch_hu)

    def ribs(self) -> None:
        """Oblique bands in the chest wall, descending towards the front, above the costal
        margin (higher in front than at the back); costal cartilage in front."""
        rng = self.rng
        period, height = _u(rng, 28, 36), _u(rng, 9, 12)
        slope = _u(rng, 90, 130) / math.pi  # mm of descent per radian from the back
        margin_back, margin_front = self.dome_right - _u(rng, 75, 95), self.dome_right - _u(rng, 15, 35)
        th = np.abs(self.theta)
        costal_margin = margin_back + (margin_front - margin_back) * (th / math.pi) ** 1.5
        band = np.mod(self.zd + slope * th - _u(rng, 0, period), period) < height
        inner = self.fat_local + 0.15 * self.wall_mm
        ribs = (self.body & band & (self.zd > costal_margin) & (self.depth > inner)
                & (self.depth < inner + _u(rng, 7, 10)) & (th > 0.4))
        self.paint(ribs & (th < math.pi - 0.55), _u(rng, 450, 750))
        self.paint(ribs & (th >= math.pi - 0.55) & (th < math.pi - 0.15), _u(rng, 100, 180))

    def table(self) -> None:
        """The patient table and its mattress (:class:`PatientTable`), outside the body."""
        table = self.geometry.table
        _, y, x = self._patient
        lateral = x.reshape(1, 1, -1) - np.float32(table.centre_x_mm)
        below_top = y.reshape(1, -1, 1) - (table.top_y_mm - lateral ** 2 / (2.0 * table.radius_mm))
        across = np.abs(lateral) <= table.width_mm / 2.0
        outside = ~self.body
        self.paint(outside & across & (below_top >= -table.pad_mm) & (below_top < 0.0), table.pad_hu)
        board = across & (below_top >= 0.0) & (below_top <= table.thickness_mm)
        shell = board & ((below_top < table.shell_mm) | (below_top > table.thickness_mm - table.shell_mm)
                         | (np.abs(lateral) > table.width_mm / 2.0 - table.shell_mm))
        self.paint(outside & board, table.core_hu)
        self.paint(outside & shell, table.shell_hu)

    def chunks(self) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """The scan in consecutive chunks of slices: ``(slices, image, labels)``, the image in
        float32 HU and the labels uint8.

        Each chunk paints the anatomy on its slices plus a margin of slices on either side,
        adds the low-frequency texture inside the body (and the table), blurs with the point
        spread function, drops the margin, adds in-plane correlated noise and clips at the
        scanner's lower bound. The margin covers the blur's reach and the stomach wall's
        erosion, so the chunks are exactly the slices of the whole volume drawn at once.
        """
        geometry = self.geometry
        depth, height, width = geometry.outline_shape
        sigma = [f / 2.3548 / s for f, s in zip(geometry.psf_fwhm_mm, geometry.spacing)]
        margin = int(4.0 * sigma[0] + 0.5) + 1  # gaussian_filter's reach (truncate=4) + 1 for the erosion
        step = max(1, _CHUNK_VOXELS // (height * width) - 2 * margin)
        for start in range(0, depth, step):
            stop = min(depth, start + step)
            low, high = max(0, start - margin), min(depth, stop + margin)
            self._start(slice(low, high))
            self.anatomy()
            if geometry.table is not None:
                self.table()
            image = self.image + np.where(self.body, geometry.texture_std * self.fields(30.0), 0.0)
            image = ndimage.gaussian_filter(image.astype(np.float32), sigma)
            keep = slice(start - low, stop - low)
            image, labels = image[keep], self.labels[keep]
            noise = self._noise.standard_normal(image.shape, dtype=np.float32)
            noise = ndimage.gaussian_filter(noise, (0.0, _NOISE_SIGMA_VOXELS, _NOISE_SIGMA_VOXELS))
            image += noise * (geometry.noise_std / _NOISE_STD_AFTER_FILTER)
            np.maximum(image, MIN_HU, out=image)
            yield slice(start, stop), image, labels


def _noise_std_after_filter() -> float:
    """Standard deviation of unit white noise after the in-plane Gaussian filter of ``chunks``."""
    delta = np.zeros(4 * int(4 * _NOISE_SIGMA_VOXELS + 1) + 1)
    delta[delta.size // 2] = 1.0
    weights = ndimage.gaussian_filter1d(delta, _NOISE_SIGMA_VOXELS)
    return float(np.sum(weights ** 2))  # sqrt(sum w^2) per in-plane axis


_NOISE_SIGMA_VOXELS = 0.6
_NOISE_STD_AFTER_FILTER = _noise_std_after_filter()


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"make_phantom: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def render_phantom(seed: int, geometry: ScanGeometry) -> Phantom:
    """Subject ``seed`` scanned with ``geometry`` (see ``_Subject`` for what is drawn, in which
    order). Deterministic; the anatomy is drawn in millimetres of the patient frame, so one
    seed is one subject at any spacing and field of view. Drawn in chunks of slices: the
    working memory beyond the returned arrays (5 bytes per voxel) is bounded."""
    image = np.empty(geometry.shape, dtype=np.float32)
    labels = np.empty(geometry.shape, dtype=np.uint8)
    for rows, image_rows, label_rows in _Subject(_check_seed(seed), geometry).chunks():
        image[rows], labels[rows] = image_rows, label_rows
    return Phantom(image=image, labels=labels, spacing=geometry.spacing, centre_mm=geometry.centre_mm)


def make_phantom(seed: int, config: PhantomConfig = PhantomConfig()) -> Phantom:
    """Draw one subject (see ``_Subject`` for what is drawn, in which order). Deterministic
    for ``seed``; the anatomy (sizes, positions, shapes, intensities) is drawn in
    millimetres, so one seed is one subject at any ``config.spacing``."""
    return render_phantom(_check_seed(seed), config.case_geometry(seed))


@dataclass(frozen=True)
class SubjectLandmarks:
    """Where subject ``seed``'s body and organs lie, in millimetres of the anatomy model (the
    patient frame divided by ``body_scale``), (z, y, x) order.

    body_centre_yx: centre of the body outline in-plane; half_width_mm: half of the body's
    width at z = 0, extra fat included; taper: relative change of the width per 90 mm along z
    (constant beyond 130 mm from z = 0); front_mm, back_mm: distance of the anterior and the
    posterior skin from the centre at the midline; dome_right_z: top of the right diaphragm
    dome; kidney_centres: left and right kidney.
    """

    body_centre_yx: tuple[float, float]
    half_width_mm: float
    taper: float
    front_mm: float
    back_mm: float
    dome_right_z: float
    kidney_centres: tuple[tuple[float, float, float], tuple[float, float, float]]

    def body_box_mm(self, z_low: float, z_high: float) -> tuple[float, float, float, float]:
        """In-plane box (y_min, y_max, x_min, x_max) that holds the body on slices between
        ``z_low`` and ``z_high``, the smooth displacement of the outline included."""
        reach = min(max(abs(z_low), abs(z_high)), _TAPER_Z_MM)
        half_x = self.half_width_mm * (1.0 + abs(self.taper) * reach / 90.0) + _DEFORM_MAX_MM
        cy, cx = self.body_centre_yx
        return (cy - self.front_mm - _DEFORM_MAX_MM, cy + self.back_mm + _DEFORM_MAX_MM,
                cx - half_x, cx + half_x)


def subject_landmarks(seed: int, extra_fat_mm: float = 0.0) -> SubjectLandmarks:
    """The landmarks of subject ``seed`` (cheap: the anatomy is drawn on a 1 x 3 x 3 grid)."""
    subject = _Subject(_check_seed(seed), ScanGeometry(shape=(1, 3, 3), spacing=(1.0, 1.0, 1.0),
                                                       extra_fat_mm=extra_fat_mm))
    subject._start(slice(None))
    subject.anatomy()
    left, right = subject.kidney_centres
    return SubjectLandmarks(body_centre_yx=(subject.cy, subject.cx), half_width_mm=subject.ax + extra_fat_mm,
                            taper=subject.taper, front_mm=subject.ay_front, back_mm=subject.ay_back,
                            dome_right_z=subject.dome_right, kidney_centres=(tuple(left), tuple(right)))


# ----------------------------------------------------------------------------- nnU-Net dataset


def case_seed(seed: int, case_index: int) -> int:
    """Seed of case ``case_index`` of a dataset written with ``seed``: an independent stream
    per (seed, case), so datasets with neighbouring seeds share no subjects."""
    return int(np.random.SeedSequence([int(seed), int(case_index)]).generate_state(1, np.uint32)[0])


def _to_sitk(array: np.ndarray, geometry: ScanGeometry) -> sitk.Image:
    image = sitk.GetImageFromArray(array)  # (z, y, x) array -> image of size (x, y, z)
    image.SetSpacing(tuple(float(s) for s in geometry.spacing[::-1]))  # SimpleITK order: x, y, z
    image.SetOrigin(_origin_lps(geometry.shape, geometry.spacing, geometry.centre_mm))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))  # LPS, see module docstring
    return image


def _write_case(job: tuple[str, int, ScanGeometry, str, str | None]) -> str:
    """Make one subject and write its image (int16 HU, as CT is stored) and, if
    ``labels_dir`` is given, its label map (uint8). The image is rounded chunk by chunk, so a
    clinical-size scan needs 3 bytes per voxel plus one chunk's working memory (and
    SimpleITK's copy of each array while it is written)."""
    case_id, seed, geometry, images_dir, labels_dir = job
    hu = np.empty(geometry.shape, dtype=np.int16)
    labels = np.empty(geometry.shape, dtype=np.uint8) if labels_dir is not None else None
    for rows, image_rows, label_rows in _Subject(seed, geometry).chunks():
        np.rint(image_rows, out=image_rows)
        hu[rows] = image_rows
        if labels is not None:
            labels[rows] = label_rows
    sitk.WriteImage(_to_sitk(hu, geometry), str(Path(images_dir) / f"{case_id}_0000.nii.gz"), True)
    del hu
    if labels is not None:
        sitk.WriteImage(_to_sitk(labels, geometry), str(Path(labels_dir) / f"{case_id}.nii.gz"), True)
    return case_id


def write_nnunet_raw_dataset(raw_root: Path, dataset_id: int, name: str, num_labeled: int,
                             num_unlabeled: int = 0, seed: int = 0,
                             config: PhantomConfig | ClinicalConfig = PhantomConfig(), num_processes: int = 1,
                             overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``raw_root/Dataset{ID:03d}_{name}`` in nnU-Net v2's raw layout and return it.

    Labeled cases ``phantom_0000`` ... go to ``imagesTr`` (``{case}_0000.nii.gz``) and
    ``labelsTr``; the unlabeled ones, numbered on after them, go to ``imagesTs`` (nnU-Net never
    preprocesses that folder; it serves self-supervised pre-training).
    Case i is the independent subject ``case_seed(seed, i)``, scanned with
    ``config.case_geometry(case_seed(seed, i))``: the same field of view for every case with a
    :class:`PhantomConfig` (``make_phantom``), a scan drawn per case with a
    :class:`vox2vec_nnunet.clinical_phantoms.ClinicalConfig`. ``dataset.json`` records the
    seeds, the configuration and every case's scan geometry. The dataset is assembled in a
    hidden sibling folder and moved into place when complete. An existing dataset folder is
    replaced only with ``overwrite=True``; another dataset with the same ID is an error.
    """
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset_id must be in 1..999 (nnU-Net's DatasetXXX_ names), got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    if num_labeled < 1:
        raise ValueError(f"num_labeled must be >= 1 (nnU-Net needs labeled training cases), got {num_labeled}")
    if num_unlabeled < 0 or num_processes < 1 or seed < 0:
        raise ValueError(f"num_unlabeled and seed must be >= 0 and num_processes >= 1, got "
                         f"num_unlabeled={num_unlabeled}, seed={seed}, num_processes={num_processes}")
    raw_root = Path(raw_root)
    folder_name = f"Dataset{int(dataset_id):03d}_{name}"
    target = raw_root / folder_name
    clashes = sorted(p.name for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if p.name != folder_name)
    if clashes:
        raise FileExistsError(f"{raw_root} already holds dataset ID {dataset_id} as {clashes}; nnU-Net finds "
                              f"datasets by ID, so choose another ID or remove it")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to replace it")

    staging = raw_root / f".{folder_name}.incomplete"
    if staging.exists():
        shutil.rmtree(staging)
    dirs = {sub: staging / sub for sub in ("imagesTr", "labelsTr", "imagesTs")}
    for sub, path in dirs.items():
        if sub != "imagesTs" or num_unlabeled:
            path.mkdir(parents=True)
    seeds = {f"phantom_{i:04d}": case_seed(seed, i) for i in range(num_labeled + num_unlabeled)}
    geometries = {case: config.case_geometry(s) for case, s in seeds.items()}
    jobs = [(case, s, geometries[case], str(dirs["imagesTr"] if i < num_labeled else dirs["imagesTs"]),
             str(dirs["labelsTr"]) if i < num_labeled else None)
            for i, (case, s) in enumerate(seeds.items())]
    with tqdm(total=len(jobs), desc=folder_name, unit="case", disable=not progress) as bar:
        if num_processes == 1:
            for job in jobs:
                _write_case(job)
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(num_processes) as pool:
                for _ in pool.imap_unordered(_write_case, jobs):
                    bar.update()

    dataset_json = {
        "name": name,
        "description": "Synthetic abdominal CT phantoms (vox2vec_nnunet.phantoms): HU images, "
                       "LPS orientation; imagesTs holds unlabeled subjects for pre-training.",
        "channel_names": {"0": "CT"},
        "labels": dict(PHANTOM_LABELS),
        "numTraining": num_labeled,
        "numTest": num_unlabeled,
        "file_ending": ".nii.gz",
        "phantoms": {"seed": seed, "config_type": type(config).__name__, "config": asdict(config),
                     "case_seeds": seeds, "case_geometries": {c: asdict(g) for c, g in geometries.items()}},
    }
    (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
