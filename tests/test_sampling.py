"""Patch-pair and positive-pair sampling (paper sec. 3.1; docs/method.md, "Positive and negative
pairs")."""
import numpy as np
import pytest

from vox2vec_nnunet.pretraining.body_mask import body_mask
from vox2vec_nnunet.pretraining.sampling import sample_pair, start_range

SHAPE = (14, 40, 48)  # (z, y, x), slice axis first
PATCH = (6, 16, 20)


def _phantom(seed: int = 0) -> np.ndarray:
    """Soft tissue (40 HU) ellipse in air with a lung (-850) holding a gas bubble, plus noise
    that makes every voxel's value distinct."""
    _, y, x = np.indices(SHAPE)
    image = np.where(((y - 20) / 15) ** 2 + ((x - 24) / 19) ** 2 <= 1, 40.0, -1000.0)
    image[((y - 18) / 6) ** 2 + ((x - 15) / 5) ** 2 <= 1] = -850.0
    image[4:7, 17:20, 14:17] = -1000.0
    return (image + np.random.default_rng(seed).normal(0, 5, SHAPE)).astype(np.float32)


def _crop(volume: np.ndarray, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    return volume[tuple(slice(s, s + p) for s, p in zip(start, size))]


def test_invariants_over_many_seeds() -> None:
    image = _phantom()
    body = body_mask(image)
    m = 300
    checked_distinct = 0
    for seed in range(200):
        pair = sample_pair(body, PATCH, m, np.random.default_rng(seed))
        anchor = np.array(pair.anchor)
        assert body[pair.anchor]
        for start in (np.array(pair.start1), np.array(pair.start2)):
            assert (start >= 0).all() and (start + PATCH <= SHAPE).all()
            assert (start <= anchor).all() and (anchor < start + PATCH).all()
        for positions in (pair.positions1, pair.positions2):
            assert positions.dtype == np.int64 and positions.shape == (m, 3)
            assert (positions >= 0).all() and (positions < PATCH).all()
        np.testing.assert_array_equal(pair.positions2, pair.positions1 + np.subtract(pair.start1, pair.start2))
        voxels = pair.positions1 + np.array(pair.start1)
        assert body[tuple(voxels.T)].all()
        overlap = tuple(slice(max(a, b), min(a, b) + p) for a, b, p in zip(pair.start1, pair.start2, PATCH))
        distinct = len(np.unique(voxels, axis=0))
        if body[overlap].sum() >= m:
            assert distinct == m  # m different positions (paper sec. 3.1)
            checked_distinct += 1
        else:
            assert distinct <= body[overlap].sum()  # too small an overlap: drawn with replacement
        patch1, patch2 = _crop(image, pair.start1, PATCH), _crop(image, pair.start2, PATCH)
        np.testing.assert_array_equal(patch1[tuple(pair.positions1.T)], patch2[tuple(pair.positions2.T)])
    assert checked_distinct > 100


def test_starts_cover_the_whole_allowed_range() -> None:
    """Per axis the start is uniform in [max(0, a - p + 1), min(S - p, a)]: with a single body
    voxel every allowed start appears, and no other."""
    body = np.zeros(SHAPE, dtype=bool)
    anchor = (3, 30, 10)
    body[anchor] = True
    starts = np.array([sample_pair(body, PATCH, 1, np.random.default_rng(seed)).start1 for seed in range(1500)])
    for axis, (a, p, s) in enumerate(zip(anchor, PATCH, SHAPE)):
        assert set(starts[:, axis]) == set(range(max(0, a - p + 1), min(s - p, a) + 1))


@pytest.mark.parametrize("body_fraction", ["large", "tiny"])
def test_anchor_is_uniform_over_body_voxels(body_fraction: str) -> None:
    """Both anchor paths (rejection sampling on a large body, enumeration on a tiny one)."""
    body = np.zeros(SHAPE, dtype=bool)
    if body_fraction == "large":
        body[:, :, :24] = True
        cells = [np.s_[:7, :, :24], np.s_[7:, :, :24]]  # two halves of equal size
    else:
        voxels = [(0, 0, 0), (5, 20, 30), (13, 39, 47), (7, 1, 44)]
        for v in voxels:
            body[v] = True
        cells = voxels
    rng = np.random.default_rng(1)
    draws = 2000
    anchors = np.array([sample_pair(body, PATCH, 1, rng).anchor for _ in range(draws)])
    assert body[tuple(anchors.T)].all()
    counts = []
    for cell in cells:
        marker = np.zeros(SHAPE, dtype=bool)
        marker[cell] = True
        counts.append(int(marker[tuple(anchors.T)].sum()))
    expected = draws / len(cells)
    assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in counts), counts


def test_with_replacement_only_when_the_overlap_is_too_small() -> None:
    body = np.zeros(SHAPE, dtype=bool)
    body[2, 10, 10:13] = True  # 3 body voxels, all within any overlap containing the anchor
    pair = sample_pair(body, PATCH, 20, np.random.default_rng(0))
    voxels = pair.positions1 + np.array(pair.start1)
    assert voxels.shape == (20, 3) and body[tuple(voxels.T)].all()
    assert len(np.unique(voxels, axis=0)) <= 3


def _crop_padded(volume: np.ndarray, start: tuple[int, ...], size: tuple[int, ...], fill: float) -> np.ndarray:
    """The box ``[start, start + size)`` of ``volume``, ``fill`` outside it (an independent padding)."""
    margin = max(size)
    padded = np.pad(volume, margin, constant_values=fill)
    return padded[tuple(slice(s + margin, s + margin + p) for s, p in zip(start, size))]


@pytest.mark.parametrize("axis", [0, 1, 2], ids=["z", "y", "x"])
def test_volume_shorter_than_the_patch_along_one_axis(axis: int) -> None:
    """Along the short axis both patches cover the whole axis (start in [S - p, 0]) and hold
    the anchor; positions are body voxels of the volume; the padded patches agree exactly
    at every pair; the other axes keep the reference range."""
    image = _phantom()
    short = list(SHAPE)
    short[axis] = PATCH[axis] - 3
    image = image[tuple(slice(0, s) for s in short)]
    body = body_mask(image)
    m = 100
    seen, distinct = set(), 0
    for seed in range(300):
        pair = sample_pair(body, PATCH, m, np.random.default_rng(seed))
        for start in (pair.start1, pair.start2):
            assert short[axis] - PATCH[axis] <= start[axis] <= 0  # covers the whole short axis
            assert start[axis] + PATCH[axis] >= short[axis]
            for other in {0, 1, 2} - {axis}:
                assert 0 <= start[other] and start[other] + PATCH[other] <= short[other]
            assert all(s <= a < s + p for s, a, p in zip(start, pair.anchor, PATCH))
            seen.add(start[axis])
        voxels = pair.positions1 + np.array(pair.start1)
        assert (voxels >= 0).all() and (voxels < short).all() and body[tuple(voxels.T)].all()
        overlap = tuple(slice(max(a, b, 0), min(a + p, b + p, n))
                        for a, b, p, n in zip(pair.start1, pair.start2, PATCH, short))
        if body[overlap].sum() >= m:
            assert len(np.unique(voxels, axis=0)) == m
            distinct += 1
        for positions in (pair.positions1, pair.positions2):
            assert (positions >= 0).all() and (positions < PATCH).all()
        patch1 = _crop_padded(image, pair.start1, PATCH, np.nan)
        patch2 = _crop_padded(image, pair.start2, PATCH, np.nan)
        values = patch1[tuple(pair.positions1.T)]
        assert not np.isnan(values).any()  # never a padded voxel
        np.testing.assert_array_equal(values, patch2[tuple(pair.positions2.T)])
    assert seen == set(range(short[axis] - PATCH[axis], 1))  # every placement of the scan in the patch
    assert distinct > 100


def test_start_range_generalises_the_reference_range() -> None:
    for size, patch in ((20, 8), (8, 8), (5, 8), (1, 8)):
        for anchor in range(size):
            low, high = start_range(size, patch, anchor)
            starts = [s for s in range(-patch, size + 1) if s <= anchor < s + patch
                      and (0 <= s and s + patch <= size if size >= patch else s <= 0 and s + patch >= size)]
            assert (low, high) == (min(starts), max(starts))
            if size >= patch:
                assert (low, high) == (max(0, anchor - patch + 1), min(size - patch, anchor))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no body voxel"):
        sample_pair(np.zeros(SHAPE, dtype=bool), PATCH, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="3-D"):
        sample_pair(np.ones((10, 10)), (4, 4), 10, np.random.default_rng(0))
