"""The anatomy model of the phantoms: one subject's tissues and labels, painted in millimetres.

No public abdominal CT with organ labels can be had offline, so the project draws its own
subjects: an abdomen from the lung bases to the lower lumbar spine whose anatomy varies between
subjects, with the usual CT intensities (air -1000, fat about -100, soft tissue 30-60,
contrast-enhanced vessels and kidney cortex 150-250, bone 400-1000, lung about -850, bowel gas).
Organs that vox2vec must tell apart share intensities on purpose -- liver and spleen are drawn
from one parenchyma value per subject, both kidneys share one cortex value, and unlabeled
look-alikes (inferior vena cava, iliac arteries, heart chambers, muscle) sit next to labeled
structures -- so that position and context, not intensity alone, separate the classes, as in
real CT (the paper's abstract: representations that capture global semantics such as body part
as well as local semantics such as different small organs).

The frame and the array layout are those of :mod:`vox2vec_nnunet.phantoms.geometry`; the
scanners (:mod:`vox2vec_nnunet.phantoms.ct`) turn the painted subject into an image.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

from vox2vec_nnunet.phantoms.fields import SmoothFields
from vox2vec_nnunet.phantoms.geometry import ScanGeometry
from vox2vec_nnunet.phantoms.shapes import depth_below_surface, distance_to_segment, ellipsoid_radius_sq

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
_SLAB_VOXELS = 2 ** 23
#: The cranio-caudal fields of view (mm) the anatomy model covers: from above the diaphragm
#: domes down to the lower lumbar spine.
FOV_Z_RANGE_MM = (150.0, 260.0)
#: Smallest in-plane field of view (y, x), mm, that holds the largest body with air around it.
MIN_FOV_YX_MM = (2.0 * (_BODY_HALF_Y_MAX + _DEFORM_MAX_MM + _MARGIN_MM),
                 2.0 * (_BODY_HALF_X_MAX * (1.0 + _BODY_TAPER_MAX) + _DEFORM_MAX_MM + _MARGIN_MM))


class Tissue(IntEnum):
    """What a voxel of a subject is, whatever the scanner: the anatomy paints these classes
    (``Subject.tissues``); CT draws their Hounsfield units per subject (:class:`TissueHU`, plus
    the smooth variations painted with them), MR their signal
    (:mod:`vox2vec_nnunet.phantoms.mr`)."""

    AIR = 0  # outside the body, bowel and stomach gas
    LUNG = 1
    FAT = 2  # subcutaneous, visceral, mediastinal, perirenal and renal sinus fat
    MUSCLE = 3  # body wall, back muscles, psoas, diaphragm, heart wall
    BOWEL_WALL = 4  # colon, small bowel and stomach walls
    LIVER = 5
    SPLEEN = 6
    KIDNEY_CORTEX = 7
    KIDNEY_MEDULLA = 8
    BLOOD = 9  # aorta, iliac arteries, inferior vena cava, heart chambers, lung vessels
    FLUID = 10  # bowel and stomach contents, bile in the gallbladder, cerebrospinal fluid
    STOOL = 11
    CORTICAL_BONE = 12  # vertebral rims, ribs
    MARROW = 13  # cancellous bone of the vertebral bodies and the neural arches
    DISC = 14
    CARTILAGE = 15  # costal cartilage
    TABLE = 16  # the patient table and its mattress


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    """One uniform draw as a Python float."""
    return float(rng.uniform(low, high))


@dataclass(frozen=True)
class TissueHU:
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
    def draw(cls, rng: np.random.Generator) -> "TissueHU":
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


class Subject:
    """Paints one subject structure by structure (``anatomy``), back to front: body wall, back
    muscles, thorax above the diaphragm, bowel and stomach, solid organs, psoas and kidneys,
    great vessels, spine, ribs; each paint overwrites the tissue and label under it. The
    cranio-caudal landmarks and the spine frame are drawn first, as the organs hang from them.

    Coordinates are millimetres of the anatomy model (the patient frame divided by the
    geometry's ``body_scale``; :mod:`vox2vec_nnunet.phantoms.geometry`). Soft tissue uses
    smoothly displaced coordinates ``zd, yd, xd`` (organic, subject-specific shapes); the skeleton and the great
    vessels use the undisplaced ``z, y, x``. Every quantity of the anatomy is a function of
    the position alone, so a volume is drawn in slabs of slices (:meth:`slabs`), each from
    the same random draws, with memory bounded by the slab size whatever the scan's length.
    """

    def __init__(self, seed: int, geometry: ScanGeometry) -> None:
        self._anatomy_seq, field_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
        self.geometry = geometry
        scale = geometry.body_scale
        shape = geometry.outline_shape
        self.spacing = tuple(s / scale for s in geometry.spacing)
        self.fields = SmoothFields(np.random.default_rng(field_seq), shape,
                                   tuple(n * s for n, s in zip(shape, self.spacing)), geometry.crop)
        self.noise_rng = np.random.default_rng(noise_seq)
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
        self.hu = TissueHU.draw(self.rng)
        self.image = np.full(self.shape, AIR_HU, dtype=np.float32)
        self.tissues = np.full(self.shape, Tissue.AIR, dtype=np.uint8)
        self.labels = np.zeros(self.shape, dtype=np.uint8)

    def paint(self, mask: np.ndarray, tissue: Tissue | np.ndarray, hu: float | np.ndarray,
              label: str = "background") -> None:
        """Set the tissue class, its CT intensity and the label where ``mask`` (broadcastable)
        holds; unlabeled tissue gets label 0, so the labels always describe the visible tissue."""
        mask = np.broadcast_to(mask, self.image.shape)
        self.image[mask] = np.broadcast_to(hu, self.image.shape)[mask] if isinstance(hu, np.ndarray) else hu
        self.tissues[mask] = (np.broadcast_to(tissue, self.image.shape)[mask] if isinstance(tissue, np.ndarray)
                              else tissue)
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
        """``ellipsoid_radius_sq`` on the displaced coordinates, evaluated where it is at most 3 (every
        test against it thresholds lower), +inf elsewhere: only the box around the centre is
        computed."""
        result = np.full(self.shape, np.inf, dtype=np.float32)
        reach = math.sqrt(_ELLIPSOID_REACH) * max(radii)
        box = self._box(np.array(center) - reach, np.array(center) + reach)
        if box is not None:
            result[box] = ellipsoid_radius_sq(self.zd[box], self.yd[box], self.xd[box], center, radii, yaw_deg,
                                              tilt_deg)
        return result

    def distance_to_polyline(self, points: np.ndarray, reach: float) -> np.ndarray:
        """Distance (mm) of the displaced coordinates to a polyline of (z, y, x) mm points where
        it is below ``reach``, +inf elsewhere: only boxes around the segments are computed."""
        best = np.full(self.shape, np.inf, dtype=np.float32)
        for a, b in zip(points[:-1], points[1:]):
            box = self._box(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
            if box is not None:
                np.minimum(best[box], distance_to_segment(self.zd[box], self.yd[box], self.xd[box], a, b),
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
        self.depth = np.stack([depth_below_surface(s, self.spacing[1:], self.geometry.crop) for s in body])
        self.body = np.ascontiguousarray(body[(slice(None), *self.geometry.crop)])
        self.theta = np.arctan2(xd - self.cx, yd - self.cy)  # 0 at the posterior midline, +-pi in front
        self.fat_mm = _u(rng, 6, 14) + 0.55 * (self.ax - 120.0) + extra
        self.wall_mm = _u(rng, 8, 13)
        self.fat_local = self.fat_mm * (0.85 - 0.15 * np.cos(self.theta)) * (1.0 + 0.15 * self.fields(60.0))
        self.cavity = self.depth > self.fat_local + self.wall_mm
        self.paint(self.body, Tissue.FAT, self.hu.fat)
        self.paint(self.body & (self.depth > self.fat_local), Tissue.MUSCLE, self.hu.muscle)
        self.paint(self.cavity, Tissue.FAT, self.hu.visceral_fat)
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
        self.paint(muscles, Tissue.MUSCLE, self.hu.muscle)
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
        self.paint(self.cavity & ~self.abdomen & ~thorax, Tissue.MUSCLE, hu.muscle)  # the diaphragm itself
        lung = hu.lung + 25.0 * self.fields(20.0)
        vessels = self.fields(4.0) > 2.3
        self.paint(thorax, np.where(vessels, Tissue.BLOOD, Tissue.LUNG), np.where(vessels, _u(rng, -150, 0), lung))
        self.paint(thorax & (np.abs(xd - self.spine_x - 5) < _u(rng, 18, 26)) & (yd < self.spine_y + self.vb_ry),
                   Tissue.FAT, hu.visceral_fat)
        heart_c = (self.dome_left + _u(rng, 5, 20), self.cy - 0.35 * self.ay_front, self.cx + _u(rng, 10, 25))
        heart = self.ellipsoid(heart_c, (_u(rng, 45, 55), _u(rng, 38, 48), _u(rng, 55, 70)), yaw_deg=_u(rng, -30, -10))
        self.paint(thorax & (heart < 1.0), Tissue.MUSCLE, hu.muscle)
        self.paint(thorax & (heart < 0.45), Tissue.BLOOD, 0.9 * hu.aorta)  # contrast in the chambers

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
        gas = self.fields(8.0) > _u(rng, 0.0, 0.8)
        stool = np.where(gas, AIR_HU, _u(rng, -120, 0) + 40.0 * self.fields(5.0))
        self.paint(self.colon_mask, Tissue.BOWEL_WALL, self.hu.muscle + 10.0)
        self.paint(self.colon_mask & (distance < radius - 3.0), np.where(gas, Tissue.AIR, Tissue.STOOL), stool)

    def small_bowel(self) -> None:
        """Serpiginous loops around the zero level set of a smooth field, in front of the
        spine and below the upper abdomen: enhancing wall, fluid, gas in some loops."""
        rng = self.rng
        loops, gas = np.abs(self.fields(30.0)), self.fields(30.0)
        zone = (self.abdomen & ~self.colon_mask & (self.yd < self.spine_y - 0.5 * self.vb_ry)
                & (self.zd < self.diaphragm - 35.0))
        width = _u(rng, 0.35, 0.5)
        self.paint(zone & (loops < width), Tissue.BOWEL_WALL, _u(rng, 70, 110))
        lumen = zone & (loops < 0.6 * width)
        self.paint(lumen, Tissue.FLUID, self.hu.fluid)
        self.paint(lumen & (gas > _u(rng, 0.8, 1.4)) & (loops < 0.4 * width), Tissue.AIR, AIR_HU)

    def stomach(self) -> None:
        """Left upper quadrant, fluid with an air-fluid level (supine: gas in front)."""
        rng = self.rng
        center = (self.spleen_z - _u(rng, 0, 20), self.cy - self.ay_in * _u(rng, 0.25, 0.45),
                  self.cx + self.ax_in * _u(rng, 0.2, 0.4))
        radii = (_u(rng, 35, 50), _u(rng, 25, 35), _u(rng, 35, 50))
        stomach = self.abdomen & (self.ellipsoid(center, radii, yaw_deg=_u(rng, -35, 0)) < 1.0 + 0.15 * self.bumps)
        self.paint(stomach, Tissue.BOWEL_WALL, self.hu.muscle)
        lumen = ndimage.binary_erosion(stomach)
        self.paint(lumen, Tissue.FLUID, self.hu.fluid + 5.0)
        self.paint(lumen & (self.yd < center[1] - radii[1] * _u(rng, 0.1, 0.8)), Tissue.AIR, AIR_HU)

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
        self.paint(liver, Tissue.LIVER, self.hu.liver, "liver")
        if rng.random() < 0.75:
            gallbladder = self.ellipsoid(
                (self.liver_z - _u(rng, 25, 45), cy - ay_in * _u(rng, 0.25, 0.4), cx - ax_in * _u(rng, 0.1, 0.3)),
                (_u(rng, 25, 35), _u(rng, 12, 18), _u(rng, 12, 18)), yaw_deg=_u(rng, -30, 30))
            self.paint(self.abdomen & (gallbladder < 1.0), Tissue.FLUID, _u(rng, 0, 20))

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
        self.paint(self.abdomen & spleen & (self.zd < self.diaphragm - 2.0), Tissue.SPLEEN, self.hu.spleen,
                   "spleen")

    def psoas(self) -> None:
        """Psoas muscles beside the lumbar vertebral bodies, thickening caudally."""
        radius = np.clip(4.0 + 0.14 * (self.psoas_top - self.z), 0.0, 22.0)
        for side in (-1.0, 1.0):
            psoas = (((self.xd - self.spine_x - side * (self.vb_rx + 0.8 * radius)) ** 2
                      + ((self.yd - self.spine_y - 3.0) / 0.9) ** 2 < radius ** 2) & (radius > 3.0))
            self.paint(self.abdomen & psoas, Tissue.MUSCLE, self.hu.muscle)

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
                       Tissue.FAT, self.hu.fat + _u(rng, 0, 15))
            kidney = self.abdomen & (q < 1.0 + 0.05 * self.bumps) & (self.zd < self.diaphragm - 2.0)
            self.paint(kidney, Tissue.KIDNEY_CORTEX, self.hu.kidney_cortex, name)
            self.paint(kidney & (q < (1.0 - 7.0 / radii[2]) ** 2), Tissue.KIDNEY_MEDULLA,
                       self.hu.kidney_medulla, name)
            medial = (-side * math.cos(math.radians(yaw)), -side * math.sin(math.radians(yaw)))  # (x, y)
            sinus_c = (kz, center[1] + 0.8 * radii[2] * medial[1], center[2] + 0.8 * radii[2] * medial[0])
            sinus = self.ellipsoid(sinus_c, (0.5 * radii[0], 0.45 * radii[1], 0.5 * radii[2]), yaw, tilt) < 1.0
            self.paint(self.abdomen & sinus & (q < 1.5), Tissue.FAT, self.hu.fat + _u(rng, 10, 30))

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
        self.paint(self.body & above & ((x - aorta_x) ** 2 + (y - aorta_y) ** 2 < radius ** 2), Tissue.BLOOD,
                   self.hu.aorta, "aorta")
        spread = math.tan(math.radians(_u(rng, 20, 30))) * (bifurcation - z)
        for side in (-1.0, 1.0):
            iliac = (x - spine_x - side * (2.0 + spread)) ** 2 + (y - aorta_y) ** 2 < (0.7 * radius) ** 2
            self.paint(self.body & ~above & iliac, Tissue.BLOOD, self.hu.aorta)
        ivc_rx, ivc_ry = _u(rng, 11, 15), _u(rng, 7, 11)
        ivc_x = spine_x - _u(rng, 18, 28)
        ivc_y = spine_y - self.vb_ry - ivc_ry - _u(rng, 4, 10)
        self.paint(self.body & (((x - ivc_x) / ivc_rx) ** 2 + ((y - ivc_y) / ivc_ry) ** 2 < 1.0), Tissue.BLOOD,
                   self.hu.vein)

    def spine(self) -> None:
        """Vertebral bodies (cortical rim, cancellous core) separated by discs; neural arch
        around the canal, spinous and transverse processes."""
        rng, z, y, x, spine_x, spine_y, hu = self.rng, self.z, self.y, self.x, self.spine_x, self.spine_y, self.hu
        period = _u(rng, 30, 36)
        disc = _u(rng, 0.22, 0.3)
        level = np.mod(z - _u(rng, 0, period), period) / period  # 0..1 within one vertebra and disc
        vertebra = level >= disc
        q = ((x - spine_x) / self.vb_rx) ** 2 + ((y - spine_y) / self.vb_ry) ** 2
        self.paint(q < 1.0, np.where(vertebra, Tissue.CORTICAL_BONE, Tissue.DISC),
                   np.where(vertebra, hu.cortical_bone, _u(rng, 70, 100)))
        self.paint((q < (1.0 - 3.0 / self.vb_ry) ** 2) & vertebra, Tissue.MARROW, hu.cancellous_bone)
        canal_r = self.canal_r
        canal_y = spine_y + self.vb_ry + canal_r + 1.0
        canal_d = np.sqrt((x - spine_x) ** 2 + (y - canal_y) ** 2)
        arch_hu = 0.5 * (hu.cortical_bone + hu.cancellous_bone)
        self.paint((canal_d < canal_r + 5.0) & (y > spine_y) & vertebra, Tissue.MARROW, arch_hu)
        self.paint(canal_d < canal_r, Tissue.FLUID, _u(rng, 0, 15))
        self.paint((np.abs(x - spine_x) < 3.0) & (y > canal_y + canal_r) & (y < canal_y + canal_r + self.spinous_len)
                   & (level > disc + 0.1) & (level < 0.9), Tissue.MARROW, arch_hu)
        transverse_len = _u(rng, 15, 25)
        self.paint((np.abs(y - canal_y + 2.0) < 3.0) & (np.abs(x - spine_x) > canal_r + 2.0)
                   & (np.abs(x - spine_x) < canal_r + 5.0 + transverse_len)
                   & (level > disc + 0.2) & (level < 0.75), Tissue.MARROW, arch_hu)

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
        self.paint(ribs & (th < math.pi - 0.55), Tissue.CORTICAL_BONE, _u(rng, 450, 750))
        self.paint(ribs & (th >= math.pi - 0.55) & (th < math.pi - 0.15), Tissue.CARTILAGE, _u(rng, 100, 180))

    def table(self) -> None:
        """The patient table and its mattress (:class:`vox2vec_nnunet.phantoms.geometry.PatientTable`),
        outside the body."""
        table = self.geometry.table
        _, y, x = self._patient
        lateral = x.reshape(1, 1, -1) - np.float32(table.centre_x_mm)
        below_top = y.reshape(1, -1, 1) - (table.top_y_mm - lateral ** 2 / (2.0 * table.radius_mm))
        across = np.abs(lateral) <= table.width_mm / 2.0
        outside = ~self.body
        self.paint(outside & across & (below_top >= -table.pad_mm) & (below_top < 0.0), Tissue.TABLE, table.pad_hu)
        board = across & (below_top >= 0.0) & (below_top <= table.thickness_mm)
        shell = board & ((below_top < table.shell_mm) | (below_top > table.thickness_mm - table.shell_mm)
                         | (np.abs(lateral) > table.width_mm / 2.0 - table.shell_mm))
        self.paint(outside & board, Tissue.TABLE, table.core_hu)
        self.paint(outside & shell, Tissue.TABLE, table.shell_hu)

    def slabs(self) -> Iterator[tuple[slice, slice]]:
        """Paint the scan slab by slab: for consecutive slabs of slices, the anatomy (and the
        table) on the slab's slices plus a margin of slices on either side (``image``,
        ``labels``, ``body`` and ``fields`` then hold them), yielding ``(slices, keep)``: the
        slab's slices of the volume and their index in the painted arrays. The margin covers
        the point spread function's reach (``gaussian_filter``, truncate=4) and the stomach
        wall's erosion, so an image formed slab by slab is exactly the slices of the whole
        volume formed at once; memory is bounded by the slab size."""
        geometry = self.geometry
        depth, height, width = geometry.outline_shape
        margin = int(4.0 * geometry.psf_sigma_voxels[0] + 0.5) + 1  # the blur's reach + 1 for the erosion
        step = max(1, _SLAB_VOXELS // (height * width) - 2 * margin)
        for start in range(0, depth, step):
            stop = min(depth, start + step)
            low, high = max(0, start - margin), min(depth, stop + margin)
            self._start(slice(low, high))
            self.anatomy()
            if geometry.table is not None:
                self.table()
            yield slice(start, stop), slice(start - low, stop - low)


def check_seed(seed: int) -> int:
    """``seed`` as an int; a clear error unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"make_phantom: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


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
    subject = Subject(check_seed(seed), ScanGeometry(shape=(1, 3, 3), spacing=(1.0, 1.0, 1.0),
                                                      extra_fat_mm=extra_fat_mm))
    subject._start(slice(None))
    subject.anatomy()
    left, right = subject.kidney_centres
    return SubjectLandmarks(body_centre_yx=(subject.cy, subject.cx), half_width_mm=subject.ax + extra_fat_mm,
                            taper=subject.taper, front_mm=subject.ay_front, back_mm=subject.ay_back,
                            dome_right_z=subject.dome_right, kidney_centres=(tuple(left), tuple(right)))
