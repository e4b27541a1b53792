"""Sampling of two overlapping patches and of positive pairs of voxels (paper sec. 3.1).

Array convention: volumes and patches are ``(z, y, x)`` with the slice axis first, as in
nnU-Net's preprocessed arrays (see :mod:`vox2vec_nnunet.pretraining.body_mask`); the
paper's patch (H, W, D) = (128, 128, 32) is ``patch_size = (32, 128, 128)`` here.

docs/method.md, "Positive and negative pairs" (reference sampling): an anchor voxel is drawn
uniformly from the body voxels; each patch's start along an axis of size S with patch size
p is uniform in ``[max(0, a - p + 1), min(S - p, a)]``, so both patches contain the anchor
``a`` and therefore overlap; m positions are drawn uniformly from the body voxels inside
both patches. A position seen in patch 1 and in patch 2 is a positive pair (exact integer
correspondence); every other sampled voxel of the batch is a negative.

Scans smaller than the patch along an axis (children, small fields of view, cropped data)
are kept: along such an axis (S < p) a patch covers the whole axis and reaches beyond it,
its start uniform in ``[S - p, 0]`` (negative: the patch begins before the scan), and the
part outside the scan is padded with air by the loader
(:data:`vox2vec_nnunet.pretraining.dataloader.AIR_HU`). One formula covers both cases,
``[max(min(0, S - p), a - p + 1), min(max(0, S - p), a)]`` (:func:`start_range`). Positions
are drawn from body voxels of the scan only, so padding is never part of a pair. The
reference implementation drops scans smaller than a patch along any axis instead; the
paper does not mention them.
"""
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MAX_ANCHOR_REJECTIONS = 64
"""Uniform voxel draws tried before the anchor falls back to enumerating the body voxels."""


@dataclass(frozen=True, eq=False)
class PairSample:
    """Two overlapping patches of one volume and the positive pairs between them.

    ``start1``/``start2`` are the patches' first voxels in volume coordinates ``(z, y, x)``
    (negative along an axis where the volume is shorter than the patch); ``anchor`` is the
    body voxel both patches contain (volume coordinates); ``positions1``/``positions2`` are
    int64 arrays ``(m, 3)`` of the same m volume voxels in patch-1 and patch-2 coordinates:
    ``positions2 == positions1 + start1 - start2``.
    """

    start1: tuple[int, int, int]
    start2: tuple[int, int, int]
    anchor: tuple[int, int, int]
    positions1: np.ndarray
    positions2: np.ndarray


def _draw_anchor(body: Any, rng: np.random.Generator) -> tuple[int, int, int]:
    """A voxel drawn uniformly from the body voxels (nonzero entries) of ``body``.

    Rejection sampling of uniform voxels reads only a few entries, so a compressed,
    memory-mapped mask (nnU-Net's blosc2 arrays) is not decompressed as a whole; after
    ``MAX_ANCHOR_REJECTIONS`` misses (a body covering a tiny part of the volume) it
    enumerates the body voxels. Either way the anchor is uniform over the body voxels.
    """
    shape = tuple(body.shape)
    for _ in range(MAX_ANCHOR_REJECTIONS):
        voxel = tuple(int(rng.integers(size)) for size in shape)
        if body[voxel]:
            return voxel
    body_voxels = np.flatnonzero(np.asarray(body[:, :, :]))
    if body_voxels.size == 0:
        raise ValueError("the body mask has no body voxel to sample from")
    return tuple(int(i) for i in np.unravel_index(body_voxels[rng.integers(body_voxels.size)], shape))


def start_range(size: int, patch: int, anchor: int) -> tuple[int, int]:
    """Smallest and largest start ``(low, high)`` of a patch along one axis.

    The patch contains ``anchor``; it lies inside the axis if the axis is at least one
    patch long (``size >= patch``: the reference range ``[max(0, a - p + 1), min(S - p, a)]``)
    and covers the whole axis otherwise (``[S - p, 0]``).
    """
    return max(min(0, size - patch), anchor - patch + 1), min(max(0, size - patch), anchor)


def sample_pair(body: Any, patch_size: Sequence[int], num_positions: int,
                rng: np.random.Generator) -> PairSample:
    """Sample two overlapping patches of a volume and ``num_positions`` positive pairs.

    ``body`` is the volume's body mask ``(z, y, x)`` (nonzero = body): a numpy array or any
    array with ``shape`` and numpy-style integer/slice indexing that returns numpy (such as
    a view of a memory-mapped blosc2 array). Only a few single voxels and the two patches'
    overlap box are read, never a whole-volume ``np.argwhere``.

    The m = ``num_positions`` positions are distinct body voxels drawn uniformly without
    replacement from the overlap (paper sec. 3.1: "m different positions"); only when the
    overlap holds fewer than m body voxels are they drawn with replacement, so that every
    volume contributes exactly m pairs (the reference returns fewer pairs instead). A
    repeated position then also appears as a negative of itself; with (32, 128, 128)
    patches and m = 1000 the overlap is that small for about 5 in 100,000 pairs.

    Along an axis where the volume is shorter than the patch, both patches cover the whole
    axis (:func:`start_range`); the caller pads what lies outside the volume.

    Raises ValueError if the volume has no body voxel.
    """
    shape = tuple(int(s) for s in body.shape)
    patch = tuple(int(p) for p in patch_size)
    if len(shape) != 3 or len(patch) != 3:
        raise ValueError(f"expected a 3-D body mask and a 3-D patch size, got shapes {shape} and {patch}")
    if any(p <= 0 for p in patch):
        raise ValueError(f"patch size must be positive, got {patch}")
    if num_positions <= 0:
        raise ValueError(f"num_positions must be positive, got {num_positions}")

    anchor = _draw_anchor(body, rng)
    ranges = [start_range(s, p, a) for s, p, a in zip(shape, patch, anchor)]
    start1 = tuple(int(rng.integers(low, high + 1)) for low, high in ranges)
    start2 = tuple(int(rng.integers(low, high + 1)) for low, high in ranges)

    # the voxels of the volume inside both patches (padding is not part of the volume)
    overlap_start = np.maximum(np.maximum(start1, start2), 0)
    overlap_stop = np.minimum(np.minimum(start1, start2) + np.array(patch), shape)
    overlap = tuple(slice(int(b), int(e)) for b, e in zip(overlap_start, overlap_stop))
    overlap_body = np.flatnonzero(np.asarray(body[overlap]))  # holds the anchor, never empty
    chosen = rng.choice(overlap_body, size=num_positions, replace=overlap_body.size < num_positions)
    voxels = np.stack(np.unravel_index(chosen, tuple(overlap_stop - overlap_start)), axis=1) + overlap_start
    voxels = voxels.astype(np.int64)
    return PairSample(start1=start1, start2=start2, anchor=anchor,
                      positions1=voxels - np.array(start1, dtype=np.int64),
                      positions2=voxels - np.array(start2, dtype=np.int64))
