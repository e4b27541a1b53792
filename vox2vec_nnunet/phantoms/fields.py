"""Smooth random fields of a subject (organ shapes, texture), defined in millimetres."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


class SmoothFields:
    """Smooth random fields with unit standard deviation, defined in millimetres over the field
    of view (noise on a node grid of about ``length_mm`` spacing, cubic-spline interpolated to
    the voxel grid), so a seed gives the same fields at every voxel spacing.

    The k-th call of a subject draws the k-th field once and keeps its nodes, so that every
    slab of slices of the volume (``rows``) evaluates the same fields; their mean and standard
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

