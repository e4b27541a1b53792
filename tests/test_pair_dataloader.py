"""Pre-training pair data loader on an nnU-Net blosc2 dataset (paper sec. 3.1)."""
import pickle

import numpy as np
import pytest
import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2, nnUNetDatasetNumpy

from pretraining_cases import phantom, write_dataset
from vox2vec_nnunet.pretraining.body_mask import body_mask
from vox2vec_nnunet.pretraining.dataloader import AIR_HU, Vox2VecPairDataLoader, pad_values

PATCH = (6, 16, 20)  # (z, y, x), slice axis first
SHAPES = [(10, 36, 40), (12, 40, 44), (8, 32, 36), (11, 38, 30), (9, 34, 38), (10, 30, 40)]
N, M = 3, 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[nnUNetDatasetBlosc2, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("preprocessed")
    volumes = write_dataset(folder, SHAPES, PATCH)
    return nnUNetDatasetBlosc2(str(folder)), volumes


def _locate(volume: np.ndarray, patch: np.ndarray) -> tuple[int, int, int]:
    """The start of ``patch`` in ``volume`` padded with air (values are distinct, so the match
    is unique); negative where the patch begins before the volume."""
    margin = max(PATCH)
    padded = np.pad(volume, margin, constant_values=AIR_HU)
    anchor = np.unravel_index(np.argmax(patch), patch.shape)
    for found in np.argwhere(padded == patch[anchor]):
        start = found - np.array(anchor)
        crop = padded[tuple(slice(s, s + p) for s, p in zip(start, patch.shape))]
        if crop.shape == patch.shape and np.array_equal(crop, patch):
            return tuple(int(s) - margin for s in start)
    raise AssertionError("patch not found in its volume")


def _check_batch(batch: dict, volumes: dict[str, np.ndarray], num_volumes: int = N) -> None:
    keys = batch["keys"]
    assert len(keys) == num_volumes and isinstance(batch["iteration"], int)
    for name in ("patches1", "patches2"):
        assert batch[name].dtype.is_floating_point and batch[name].numpy().dtype == np.float32
        assert tuple(batch[name].shape) == (num_volumes, 1, *PATCH)
    seeds = batch["augmentation_seeds"]
    assert seeds.dtype == torch.int64 and tuple(seeds.shape) == (num_volumes, 2) and (seeds >= 0).all()
    assert len(set(seeds.flatten().tolist())) == 2 * num_volumes
    pos1, pos2 = batch["positions1"].numpy(), batch["positions2"].numpy()
    assert pos1.dtype == np.int64 and pos1.shape == pos2.shape == (num_volumes * M, 4)
    np.testing.assert_array_equal(pos1[:, 0], np.repeat(np.arange(num_volumes), M))
    np.testing.assert_array_equal(pos1[:, 0], pos2[:, 0])
    assert (pos1[:, 1:] >= 0).all() and (pos1[:, 1:] < PATCH).all()
    assert (pos2[:, 1:] >= 0).all() and (pos2[:, 1:] < PATCH).all()
    p1, p2 = batch["patches1"].numpy()[:, 0], batch["patches2"].numpy()[:, 0]
    # a positive pair is the same voxel: both un-augmented patches hold the same value there
    np.testing.assert_array_equal(p1[tuple(pos1.T)], p2[tuple(pos2.T)])
    for v, key in enumerate(keys):
        volume = volumes[key]
        body = body_mask(volume)
        start1, start2 = _locate(volume, p1[v]), _locate(volume, p2[v])
        rows = pos1[:, 0] == v
        voxels = pos1[rows, 1:] + start1
        np.testing.assert_array_equal(voxels, pos2[rows, 1:] + start2)
        assert (voxels >= 0).all() and (voxels < volume.shape).all() and body[tuple(voxels.T)].all()


def _assert_same_batch(a: dict, b: dict) -> None:
    assert a["keys"] == b["keys"] and a["iteration"] == b["iteration"]
    for name in ("patches1", "patches2", "positions1", "positions2", "augmentation_seeds"):
        assert torch.equal(a[name], b[name]), name


def test_single_threaded(dataset) -> None:
    data, volumes = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, seed=0)
    augmenter = SingleThreadedAugmenter(loader, None)
    for i in range(4):
        batch = next(augmenter)
        assert batch["iteration"] == i
        _check_batch(batch, volumes)
        assert len(set(batch["keys"])) == N  # n different volumes


def test_numpy_dataset(tmp_path) -> None:
    volumes = write_dataset(tmp_path, SHAPES[:4], PATCH, blosc2=False)
    loader = Vox2VecPairDataLoader(nnUNetDatasetNumpy(str(tmp_path)), N, M, PATCH, seed=0)
    _check_batch(next(SingleThreadedAugmenter(loader, None)), volumes)


def test_batches_are_a_pure_function_of_seed_and_iteration(dataset) -> None:
    data, _ = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, seed=5)
    first = [loader.generate_train_batch() for _ in range(3)]
    again = Vox2VecPairDataLoader(data, N, M, PATCH, seed=5)
    for i in (2, 0, 1):  # any order
        _assert_same_batch(again.generate_batch(i), first[i])
    resumed = Vox2VecPairDataLoader(data, N, M, PATCH, seed=5, start_iteration=2)  # --c at iteration 2
    _assert_same_batch(next(resumed), first[2])
    _assert_same_batch(pickle.loads(pickle.dumps(loader)).generate_batch(1), first[1])
    other = Vox2VecPairDataLoader(data, N, M, PATCH, seed=6).generate_batch(0)
    assert not torch.equal(other["positions1"], first[0]["positions1"])
    assert not torch.equal(first[1]["positions1"], first[0]["positions1"])
    seen = {tuple(loader.generate_batch(i)["keys"]) for i in range(20)}
    assert len(seen) > 10  # the case slots change with the iteration


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_hold_the_union_batch(dataset, world_size: int) -> None:
    """W ranks of a 6-volume iteration take contiguous slots; together they hold exactly the
    batch one process makes."""
    data, volumes = dataset
    whole = Vox2VecPairDataLoader(data, 6, M, PATCH, seed=3).generate_batch(11)
    _check_batch(whole, volumes, num_volumes=6)
    parts = [Vox2VecPairDataLoader(data, 6, M, PATCH, seed=3, rank=r, world_size=world_size).generate_batch(11)
             for r in range(world_size)]
    per_rank = 6 // world_size
    assert sum((p["keys"] for p in parts), []) == whole["keys"]
    for name in ("patches1", "patches2", "augmentation_seeds"):
        assert torch.equal(torch.cat([p[name] for p in parts]), whole[name])
    for name in ("positions1", "positions2"):
        shifted = [p[name] + torch.tensor([r * per_rank, 0, 0, 0]) for r, p in enumerate(parts)]
        assert torch.equal(torch.cat(shifted), whole[name])


def test_world_size_must_divide_the_volumes(dataset) -> None:
    data, _ = dataset
    with pytest.raises(ValueError, match="num_volumes=3 .* cannot be split evenly over 2 processes"):
        Vox2VecPairDataLoader(data, 3, M, PATCH, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        Vox2VecPairDataLoader(data, 4, M, PATCH, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed"):
        Vox2VecPairDataLoader(data, 4, M, PATCH, seed=-1)


# batchgenerators' shutdown can stop a worker while its last tensor is still being received
# (a shared-memory handle), which its results thread reports; that is not a loader failure
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_ordered_workers_return_the_iterations_in_order(dataset) -> None:
    """batchgenerators' ordered MultiThreadedAugmenter with 2 workers: worker t makes
    iterations start + t + 2k, the augmenter reads the workers in turn, so the batches are
    those of one process, in order."""
    data, volumes = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, seed=1, start_iteration=4, num_threads_in_multithreaded=2)
    augmenter = MultiThreadedAugmenter(loader, None, 2, num_cached_per_queue=2)
    try:
        batches = [next(augmenter) for _ in range(5)]
    finally:
        augmenter._finish()
    reference = Vox2VecPairDataLoader(data, N, M, PATCH, seed=1)
    for i, batch in zip(range(4, 9), batches):
        _assert_same_batch(batch, reference.generate_batch(i))
    _check_batch(batches[0], volumes)


def test_worker_ids_follow_the_augmenter(dataset) -> None:
    data, _ = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, seed=1, start_iteration=10, num_threads_in_multithreaded=3)
    loader.set_thread_id(2)
    assert [loader.generate_train_batch()["iteration"] for _ in range(3)] == [12, 15, 18]
    with pytest.raises(ValueError, match="num_threads_in_multithreaded"):
        loader.set_thread_id(3)


def test_fewer_cases_than_volumes(dataset) -> None:
    data, volumes = dataset
    with pytest.warns(UserWarning, match="with replacement"):
        loader = Vox2VecPairDataLoader(data, 8, M, PATCH, seed=0)
    batch = loader.generate_train_batch()
    _check_batch(batch, volumes, num_volumes=8)


@pytest.mark.parametrize("axis", [0, 1, 2], ids=["z", "y", "x"])
def test_scan_shorter_than_the_patch_is_padded_with_air(tmp_path, axis: int) -> None:
    """Along the short axis the patches hold the whole scan and air (AIR_HU) beyond it, and
    the pairs are body voxels of the scan that correspond exactly."""
    shape = [10, 36, 40]
    shape[axis] = PATCH[axis] - 2
    volumes = write_dataset(tmp_path, [tuple(shape)], PATCH)
    loader = Vox2VecPairDataLoader(nnUNetDatasetBlosc2(str(tmp_path)), 1, M, PATCH, seed=0)
    padded_sides = set()
    for _ in range(12):
        batch = loader.generate_train_batch()
        _check_batch(batch, volumes, num_volumes=1)
        for name in ("patches1", "patches2"):
            patch = batch[name].numpy()[0, 0]
            start = _locate(volumes["case_000"], patch)
            assert shape[axis] - PATCH[axis] <= start[axis] <= 0
            inside = np.zeros(PATCH, dtype=bool)
            inside[tuple(slice(max(0, -s), min(p, n - s)) for s, p, n in zip(start, PATCH, shape))] = True
            assert (patch[~inside] == AIR_HU).all() and (patch[inside] != AIR_HU).all()
            padded_sides.add((start[axis] < 0, start[axis] + PATCH[axis] > shape[axis]))
    assert len(padded_sides) > 1  # the scan sits at different places in the patch


@pytest.mark.parametrize("stored", [True, False], ids=["count_stored", "count_from_mask"])
def test_case_with_too_few_body_voxels_is_named(tmp_path, stored: bool) -> None:
    volumes = write_dataset(tmp_path, [(8, 32, 36), (6, 16, 20)], PATCH, body_voxels_property=stored)
    small, large = (int(body_mask(volumes[k]).sum()) for k in ("case_001", "case_000"))
    assert small < large
    data = nnUNetDatasetBlosc2(str(tmp_path))
    with pytest.raises(ValueError, match=rf"'case_001' .* has {small} body voxels, fewer than the m = {small + 1}"):
        Vox2VecPairDataLoader(data, 1, small + 1, PATCH, seed=0)
    Vox2VecPairDataLoader(data, 1, small, PATCH, seed=0)  # exactly m body voxels is enough


def test_channels_of_a_scan_are_cropped_together_each_padded_with_its_value(tmp_path) -> None:
    """A scan of a CT channel (HU) and a z-scored one: both channels of a patch come from the same
    place, the CT channel padded with air, the z-scored channel with 0 (pad_values)."""
    shape = (PATCH[0] - 2, 36, 40)
    ct = phantom(shape, np.random.default_rng(0))
    second = ((ct - ct.mean()) / ct.std() + 5.0).astype(np.float32)  # nonzero everywhere
    seg = body_mask(ct)[None].astype(np.int8)
    nnUNetDatasetNumpy.save_case(np.stack([ct, second]), seg, {"vox2vec_body_voxels": int(seg.sum())},
                                 str(tmp_path / "case_000"))
    data = nnUNetDatasetNumpy(str(tmp_path))
    values = pad_values(["NoNormalization", "ZScoreNormalization"])
    assert values == (AIR_HU, 0.0)
    loader = Vox2VecPairDataLoader(data, 1, M, PATCH, seed=0, channel_pad_values=values)
    for _ in range(4):
        batch = loader.generate_train_batch()
        patches = batch["patches1"].numpy()[0]
        assert patches.shape == (2, *PATCH)
        start = _locate(ct, patches[0])
        inside = np.zeros(PATCH, dtype=bool)
        inside[tuple(slice(max(0, -s), min(p, n - s)) for s, p, n in zip(start, PATCH, shape))] = True
        assert (~inside).any()
        np.testing.assert_array_equal(patches[1][inside], ((patches[0][inside] - ct.mean()) / ct.std() + 5.0)
                                      .astype(np.float32))
        assert (patches[0][~inside] == AIR_HU).all() and (patches[1][~inside] == 0.0).all()
    with pytest.raises(ValueError, match="expected 1 channel"):
        Vox2VecPairDataLoader(data, 1, M, PATCH, seed=0).generate_batch(0)
    with pytest.raises(ValueError, match="RescaleTo01Normalization"):
        pad_values(["RescaleTo01Normalization"])
