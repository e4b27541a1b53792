"""CT phantoms scanned the way clinical CT comes from a scanner (pre-training at scale).

The default phantoms (:class:`vox2vec_nnunet.phantoms.ct.PhantomConfig`) share one small field of
view. An archive of clinical CT does not: :class:`ClinicalConfig` draws, per case and from the
case's seed, a scan as a scanner writes it, and the anatomy model of
:mod:`vox2vec_nnunet.phantoms.anatomy` (millimetres in the patient frame) is sampled on that grid:

* 512 x 512 pixels in-plane of 0.6-0.9 mm, the field of view chosen to hold the body (and
  the table), as a technologist sets it; 100-600 slices of 0.6-1.25 mm (thin) or 1.5-5 mm
  (thick) covering the lung bases down to the pelvis;
* small-field-of-view reconstructions: 512 x 512 pixels of 0.35-0.45 mm (180-230 mm) centred
  on the kidneys, thin slices only; the body crosses the in-plane border (adults only);
* bodies from a child (170-230 mm wide; the whole anatomy scaled down) to a large adult (up
  to 400 mm wide; extra subcutaneous fat around an adult anatomy);
* the patient table in most scans: a curved carbon-fibre cradle with a foam core and a foam
  mattress (below -500 HU), separated from the body by that mattress and air;
* the slice profile (point spread function along z, FWHM = slice spacing) and noise that
  grows on thin slices.

What the anatomy model does not have is said in :func:`clinical_geometry`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vox2vec_nnunet.phantoms.anatomy import SubjectLandmarks, subject_landmarks
from vox2vec_nnunet.phantoms.ct import Phantom, render_phantom
from vox2vec_nnunet.phantoms.geometry import PatientTable, ScanGeometry

#: Seed-sequence child (of the case seed) that draws the scan geometry; children 0-2 draw the
#: anatomy, its smooth fields and the image noise (:class:`vox2vec_nnunet.phantoms.anatomy.Subject`).
_GEOMETRY_STREAM = 3
# Air kept around the body (and table) on each side when the field of view is chosen, mm.
_FOV_CLEARANCE_MM = 10.0


def _pair(value: tuple[float, float], name: str, positive: bool = True) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low <= high or (positive and low <= 0):
        raise ValueError(f"ClinicalConfig.{name} must be (low, high) with 0 < low <= high, got {value}")
    return low, high


@dataclass(frozen=True)
class ClinicalConfig:
    """The distribution of clinical scans; :meth:`case_geometry` draws one per case.

    in_plane_voxels: pixels per row and column (512 on every current scanner).
    pixel_mm: in-plane pixel size of a standard reconstruction (field of view / 512).
    small_fov_p, small_fov_pixel_mm: probability and pixel size of a small-field-of-view
        reconstruction around the kidneys (adults only).
    slices: range of the number of slices.
    thin_p, thin_slice_mm, thick_slice_mm: probability of a thin-slice series and the slice
        spacings of thin and thick series (each a list of the usual values).
    scan_length_mm, kidney_scan_length_mm: cranio-caudal coverage of a standard scan and of a
        kidney scan, for an adult-size anatomy (scaled with the body).
    child_p, child_width_mm: probability and body width of a child.
    adult_scale: size of an adult's anatomy relative to the model; max_width_mm: the widest
        adult (extra fat; widths between are drawn with more weight on slimmer bodies).
    table_p: probability that the patient table is in the field of view.
    downsample: draw each scan as above, then sample it on a grid this many times coarser
        along every axis (same field of view, subject and table): small volumes for quick
        looks and tests. 1 = as the scanner writes it.
    """

    in_plane_voxels: int = 512
    pixel_mm: tuple[float, float] = (0.6, 0.9)
    small_fov_p: float = 0.2
    small_fov_pixel_mm: tuple[float, float] = (0.35, 0.45)
    slices: tuple[int, int] = (100, 600)
    thin_p: float = 0.5
    thin_slice_mm: tuple[float, ...] = (0.6, 0.625, 0.75, 0.8, 1.0, 1.25)
    thick_slice_mm: tuple[float, ...] = (1.5, 2.0, 2.5, 3.0, 5.0)
    scan_length_mm: tuple[float, float] = (250.0, 450.0)
    kidney_scan_length_mm: tuple[float, float] = (150.0, 250.0)
    child_p: float = 0.15
    child_width_mm: tuple[float, float] = (170.0, 230.0)
    adult_scale: tuple[float, float] = (0.92, 1.08)
    max_width_mm: float = 400.0
    table_p: float = 0.7
    downsample: int = 1

    def __post_init__(self) -> None:
        if self.in_plane_voxels < 16:
            raise ValueError(f"ClinicalConfig.in_plane_voxels must be >= 16, got {self.in_plane_voxels}")
        for name in ("pixel_mm", "small_fov_pixel_mm", "scan_length_mm", "kidney_scan_length_mm",
                     "child_width_mm", "adult_scale"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        low, high = self.slices
        if not 1 <= low <= high:
            raise ValueError(f"ClinicalConfig.slices must be (low, high) with 1 <= low <= high, got {self.slices}")
        object.__setattr__(self, "slices", (int(low), int(high)))
        for name in ("thin_slice_mm", "thick_slice_mm"):
            values = tuple(float(v) for v in getattr(self, name))
            if not values or min(values) <= 0:
                raise ValueError(f"ClinicalConfig.{name} must be positive slice spacings, got {values}")
            object.__setattr__(self, name, values)
        for name in ("small_fov_p", "thin_p", "child_p", "table_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ClinicalConfig.{name} must be a probability, got {getattr(self, name)}")
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"ClinicalConfig.downsample must be a positive integer, got {self.downsample!r}")
        if self.max_width_mm <= 0:
            raise ValueError(f"ClinicalConfig.max_width_mm must be positive, got {self.max_width_mm}")

    def case_geometry(self, seed: int) -> ScanGeometry:
        """The scan of subject ``seed`` (see :func:`clinical_geometry`), ``downsample`` applied."""
        geometry = clinical_geometry(seed, self)
        if self.downsample == 1:
            return geometry
        return geometry.with_spacing(tuple(s * self.downsample for s in geometry.spacing))


def _draw_table(rng: np.random.Generator, landmarks: SubjectLandmarks, scale: float) -> PatientTable:
    """A table under the lowest point the back can reach (outline displacement included), so
    that the mattress and air always separate it from the body."""
    cy, cx = landmarks.body_centre_yx
    _, lowest_back, _, _ = landmarks.body_box_mm(0.0, 0.0)
    pad = float(rng.uniform(8.0, 30.0))
    return PatientTable(centre_x_mm=scale * cx + float(rng.uniform(-15.0, 15.0)),
                        top_y_mm=scale * lowest_back + pad + float(rng.uniform(0.0, 5.0)),
                        radius_mm=float(rng.uniform(450.0, 900.0)), width_mm=float(rng.uniform(420.0, 520.0)),
                        thickness_mm=float(rng.uniform(30.0, 60.0)), shell_mm=float(rng.uniform(2.0, 4.0)),
                        shell_hu=float(rng.uniform(150.0, 400.0)), core_hu=float(rng.uniform(-980.0, -900.0)),
                        pad_mm=pad, pad_hu=float(rng.uniform(-900.0, -780.0)))


def _outline_margin(box: tuple[float, float, float, float], centre_yx: tuple[float, float], pixels: int,
                    pixel_mm: float) -> tuple[int, int, int, int]:
    """Voxels the body box reaches beyond the field of view on each in-plane side."""
    half = pixels * pixel_mm / 2.0
    y0, y1, x0, x1 = box
    cy, cx = centre_yx
    beyond = (cy - half - y0, y1 - cy - half, cx - half - x0, x1 - cx - half)
    return tuple(int(math.ceil(max(0.0, b) / pixel_mm)) + 2 if b > 0 else 0 for b in beyond)


def clinical_geometry(seed: int, config: ClinicalConfig = ClinicalConfig()) -> ScanGeometry:
    """Draw the scan of subject ``seed`` from ``config`` (a stream of its own, so the subject's
    anatomy is the same as with :class:`vox2vec_nnunet.phantoms.ct.PhantomConfig`).

    In order: the body (a child scales the whole anatomy; an adult gets a size near the model's
    and extra fat up to ``max_width_mm``), the series (small field of view or not, thin or
    thick slices, the coverage along z), the table, and the in-plane field of view: around the
    kidneys for a small field of view, else the smallest of 512 pixels of ``pixel_mm`` that
    holds the body and the table with 10 mm of air (the largest bodies may touch the border).

    Outside the modelled region (lung bases to the lower lumbar spine) the anatomy continues
    as it is there: the chest holds lungs, heart and ribs up to the top; below the lumbar spine
    the abdomen, bowel, iliac vessels and a vertebral column go on (no pelvic bones).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"clinical_geometry: seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_GEOMETRY_STREAM,)))
    landmarks = subject_landmarks(seed)
    child = rng.random() < config.child_p
    if child:
        scale = float(rng.uniform(*config.child_width_mm)) / (2.0 * landmarks.half_width_mm)
        extra_fat = 0.0
    else:
        scale = float(rng.uniform(*config.adult_scale))
        room = max(0.0, config.max_width_mm / (2.0 * scale) - landmarks.half_width_mm)
        extra_fat = float(rng.random()) ** 2 * room
        landmarks = subject_landmarks(seed, extra_fat)

    small_fov = not child and rng.random() < config.small_fov_p
    thin = small_fov or rng.random() < config.thin_p
    slice_mm = float(rng.choice(config.thin_slice_mm if thin else config.thick_slice_mm))
    kidneys = np.array(landmarks.kidney_centres).mean(axis=0)  # model mm (z, y, x)
    if small_fov:
        length = scale * float(rng.uniform(*config.kidney_scan_length_mm))
        centre_z = scale * float(kidneys[0]) + float(rng.uniform(-20.0, 20.0))
    else:
        length = scale * float(rng.uniform(*config.scan_length_mm))
        top = scale * (landmarks.dome_right_z + float(rng.uniform(10.0, 100.0)))
        centre_z = top - length / 2.0
    num_slices = int(np.clip(round(length / slice_mm), *config.slices))
    length = num_slices * slice_mm
    z_range = ((centre_z - length / 2.0) / scale, (centre_z + length / 2.0) / scale)
    body_box = tuple(scale * b for b in landmarks.body_box_mm(*z_range))

    table = _draw_table(rng, landmarks, scale) if rng.random() < config.table_p else None
    pixels = config.in_plane_voxels
    if small_fov:
        pixel_mm = float(rng.uniform(*config.small_fov_pixel_mm))
        centre_yx = (scale * float(kidneys[1]) + float(rng.uniform(-10.0, 10.0)),
                     scale * float(kidneys[2]) + float(rng.uniform(-10.0, 10.0)))
    else:
        y0, y1, x0, x1 = body_box
        if table is not None:
            y1 = max(y1, table.top_y_mm + table.thickness_mm)
        need = max(y1 - y0, x1 - x0) + 2.0 * _FOV_CLEARANCE_MM
        low, high = config.pixel_mm
        pixel_mm = float(rng.uniform(min(max(low, need / pixels), high), high))
        centre_yx = ((y0 + y1) / 2.0 + float(rng.uniform(-5.0, 5.0)),
                     (x0 + x1) / 2.0 + float(rng.uniform(-5.0, 5.0)))
    return ScanGeometry(
        shape=(num_slices, pixels, pixels), spacing=(slice_mm, pixel_mm, pixel_mm),
        centre_mm=(centre_z, *centre_yx), body_scale=scale, extra_fat_mm=extra_fat, table=table,
        psf_fwhm_mm=(slice_mm, 1.2, 1.2), noise_std=float(np.clip(rng.uniform(10.0, 18.0) * math.sqrt(2.5 / slice_mm),
                                                                  8.0, 40.0)),
        texture_std=6.0, outline_margin=_outline_margin(body_box, centre_yx, pixels, pixel_mm))


def make_clinical_phantom(seed: int, config: ClinicalConfig = ClinicalConfig()) -> Phantom:
    """Subject ``seed`` scanned as ``config.case_geometry(seed)`` (at full size up to 600 x 512 x
    512 voxels, 5 bytes each in the result)."""
    return render_phantom(seed, config.case_geometry(seed))


def body_width_mm(geometry: ScanGeometry, landmarks: SubjectLandmarks) -> float:
    """The body's width at the anatomy's z = 0 in the patient frame, mm."""
    return 2.0 * landmarks.half_width_mm * geometry.body_scale


def describe(geometry: ScanGeometry, seed: int) -> str:
    """One line about a case's scan: grid, spacing, field of view, body width, table."""
    landmarks = subject_landmarks(seed, geometry.extra_fat_mm)
    z, y, x = geometry.shape
    crossing = ", body crosses the border" if any(geometry.outline_margin) else ""
    return (f"{z:4d} x {y} x {x} voxels, {geometry.spacing[0]:.3g} x {geometry.spacing[1]:.3f} x "
            f"{geometry.spacing[2]:.3f} mm, FOV {geometry.fov_mm[1]:.0f} mm, body "
            f"{body_width_mm(geometry, landmarks):.0f} mm wide (scale {geometry.body_scale:.2f}, extra fat "
            f"{geometry.extra_fat_mm:.0f} mm), {'table' if geometry.table is not None else 'no table'}{crossing}")
