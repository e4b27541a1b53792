"""Geometric primitives of the anatomy model, evaluated on voxel coordinates in millimetres."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def ellipsoid_radius_sq(z: np.ndarray, y: np.ndarray, x: np.ndarray, center: tuple[float, float, float],
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


def distance_to_segment(z: np.ndarray, y: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) from every voxel to the segment from ``a`` to ``b`` ((z, y, x) mm)."""
    d = b - a
    t = ((z - a[0]) * d[0] + (y - a[1]) * d[1] + (x - a[2]) * d[2]) / float(d @ d)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((z - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (x - a[2] - t * d[2]) ** 2)


def depth_below_surface(body: np.ndarray, spacing: tuple[float, float], crop: tuple[slice, slice]) -> np.ndarray:
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

