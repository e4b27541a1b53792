"""Pre-training pair data loader on an nnU-Net blosc2 dataset (paper sec. 3.1)."""
import pickle
from pathlib import Path

import numpy as np
import pytest
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.dataloading.nnunet_dataset import (comp_blosc2_params, nnUNetDatasetBlosc2,
                                                          nnUNetDatasetNumpy)

from vox2vec_nnunet.pretraining.body_mask import body_mask
from vox2vec_nnunet.pretraining.dataloader import Vox2VecPairDataLoader

PATCH = (6, 16, 20)  # (z, y, x), slice axis first
SHAPES = [(10, 36, 40), (12, 40, 44), (8, 32, 36), (11, 38, 30)]
N, M = 3, 40


def _phantom(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Soft-tissue ellipse (40 HU) in air with a lung (-850) and a gas bubble; noise makes
    every voxel value distinct so a patch can be located in its volume."""
    _, y, x = np.indices(shape)
    cy, cx = shape[1] / 2, shape[2] / 2
    image = np.where(((y - cy) / (0.4 * shape[1])) ** 2 + ((x - cx) / (0.4 * shape[2])) ** 2 <= 1, 40.0, -1000.0)
    image[((y - cy) / 5) ** 2 + ((x - cx + 5) / 4) ** 2 <= 1] = -850.0
    image[2:4, int(cy), int(cx) - 5] = -1000.0
    return (image + rng.normal(0, 5, shape)).astype(np.float32)


def _write_dataset(folder: Path, shapes: list[tuple[int, int, int]], blosc2: bool = True) -> dict[str, np.ndarray]:
    """Cases saved with nnU-Net's own dataset classes; ``seg`` holds the body mask."""
    rng = np.random.default_rng(0)
    volumes = {}
    for i, shape in enumerate(shapes):
        image = _phantom(shape, rng)
        seg = body_mask(image)[None].astype(np.int8)
        name = str(folder / f"case_{i:03d}")
        if blosc2:
            blocks, chunks = comp_blosc2_params((1, *shape), PATCH)
            nnUNetDatasetBlosc2.save_case(image[None], seg, {"shape": shape}, name, chunks=chunks, blocks=blocks)
        else:
            nnUNetDatasetNumpy.save_case(image[None], seg, {"shape": shape}, name)
        volumes[f"case_{i:03d}"] = image
    return volumes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[nnUNetDatasetBlosc2, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("preprocessed")
    volumes = _write_dataset(folder, SHAPES)
    return nnUNetDatasetBlosc2(str(folder)), volumes


def _locate(volume: np.ndarray, patch: np.ndarray) -> tuple[int, int, int]:
    """The start of ``patch`` in ``volume`` (values are distinct, so the match is unique)."""
    for start in np.argwhere(volume == patch[0, 0, 0]):
        crop = volume[tuple(slice(s, s + p) for s, p in zip(start, patch.shape))]
        if crop.shape == patch.shape and np.array_equal(crop, patch):
            return tuple(int(s) for s in start)
    raise AssertionError("patch not found in its volume")


def _check_batch(batch: dict, volumes: dict[str, np.ndarray], num_volumes: int = N) -> None:
    keys = batch["keys"]
    assert len(keys) == num_volumes
    for name in ("patches1", "patches2"):
        assert batch[name].dtype.is_floating_point and batch[name].numpy().dtype == np.float32
        assert tuple(batch[name].shape) == (num_volumes, 1, *PATCH)
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
        assert body[tuple(voxels.T)].all()


def test_single_threaded(dataset) -> None:
    data, volumes = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, seed=0)
    augmenter = SingleThreadedAugmenter(loader, None)
    for _ in range(4):
        batch = next(augmenter)
        _check_batch(batch, volumes)
        assert len(set(batch["keys"])) == N  # n different volumes


def test_numpy_dataset(tmp_path) -> None:
    volumes = _write_dataset(tmp_path, SHAPES, blosc2=False)
    loader = Vox2VecPairDataLoader(nnUNetDatasetNumpy(str(tmp_path)), N, M, PATCH, seed=0)
    _check_batch(next(SingleThreadedAugmenter(loader, None)), volumes)


# batchgenerators' shutdown can stop a worker while its last tensor is still being received
# (a shared-memory handle), which its results thread reports; that is not a loader failure
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_multi_threaded_workers_differ(dataset) -> None:
    data, volumes = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, num_threads_in_multithreaded=2, seed=1)
    augmenter = NonDetMultiThreadedAugmenter(loader, None, 2, num_cached=2)
    try:
        batches = [next(augmenter) for _ in range(6)]
    finally:
        augmenter._finish()
    for batch in batches:
        _check_batch(batch, volumes)
    fingerprints = {batch["positions1"].numpy().tobytes() for batch in batches}
    assert len(fingerprints) == len(batches)


def test_seeding_and_pickling(dataset) -> None:
    data, _ = dataset
    loader = Vox2VecPairDataLoader(data, N, M, PATCH, seed=5)
    copy = pickle.loads(pickle.dumps(loader))
    a, b = loader.generate_train_batch(), copy.generate_train_batch()
    assert a["keys"] == b["keys"]
    np.testing.assert_array_equal(a["positions1"].numpy(), b["positions1"].numpy())
    copy.set_thread_id(1)
    loader.set_thread_id(0)
    first, other = loader.generate_train_batch(), copy.generate_train_batch()
    np.testing.assert_array_equal(first["positions1"].numpy(), a["positions1"].numpy())
    assert not np.array_equal(first["positions1"].numpy(), other["positions1"].numpy())


def test_fewer_cases_than_volumes(dataset) -> None:
    data, volumes = dataset
    with pytest.warns(UserWarning, match="with replacement"):
        loader = Vox2VecPairDataLoader(data, 6, M, PATCH, seed=0)
    batch = loader.generate_train_batch()
    _check_batch(batch, volumes, num_volumes=6)


def test_case_smaller_than_the_patch_is_named(tmp_path) -> None:
    _write_dataset(tmp_path, [(4, 36, 40)])
    loader = Vox2VecPairDataLoader(nnUNetDatasetBlosc2(str(tmp_path)), 1, M, PATCH, seed=0)
    with pytest.raises(ValueError, match="case_000.*smaller than the patch"):
        loader.generate_train_batch()
