"""Pre-training data loader on nnU-Net's data stack (paper sec. 3.1).

Each batch holds, for n different volumes, two overlapping HU patches and m positive pairs
of voxels between them (:func:`vox2vec_nnunet.pretraining.sampling.sample_pair`).
Volumes come from an nnU-Net preprocessed dataset (``nnUNetDatasetBlosc2`` or
``nnUNetDatasetNumpy``): ``load_case`` gives the CT ``data`` (1, z, y, x) in HU and a ``seg``
of the same shape that, in the pre-training dataset written by the preparation step, holds
the body mask (1 = body, 0 = background; paper sec. 3.1). Arrays follow the convention of
:mod:`vox2vec_nnunet.pretraining.body_mask`: slice axis first.

No augmentation happens here: the patches stay in HU and the trainer applies
:class:`vox2vec_nnunet.pretraining.augmentation.IntensityAugmentation` on the device where
it is cheapest (the GPU during training).

The loader is a batchgenerators ``DataLoader`` with ``infinite=True`` (as nnU-Net's own
``nnUNetDataLoader``), so it runs in ``SingleThreadedAugmenter`` and in nnU-Net's
``NonDetMultiThreadedAugmenter``. It draws from its own ``numpy.random.Generator``; each
worker re-derives it from the loader's seed and its thread id (``set_thread_id`` is what
the augmenters call in every worker), so workers never repeat one another. With
``seed=None`` every worker takes fresh OS entropy.
"""
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgenerators.dataloading.data_loader import DataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetBaseDataset

from vox2vec_nnunet.pretraining.sampling import sample_pair


class _SpatialView:
    """The spatial axes of one channel of a channel-first array ``(c, z, y, x)``.

    Indexing reads only the requested voxels, so a memory-mapped blosc2 mask is not
    decompressed as a whole by :func:`sample_pair`.
    """

    def __init__(self, array: Any, channel: int = 0) -> None:
        self.array = array
        self.channel = channel
        self.shape = tuple(array.shape[1:])

    def __getitem__(self, index: tuple) -> np.ndarray:
        return np.asarray(self.array[(self.channel, *index)])


class Vox2VecPairDataLoader(DataLoader):
    """Batches of patch pairs and positive voxel pairs for vox2vec pre-training.

    ``generate_train_batch()`` returns a dict:

    * ``patches1``, ``patches2``: float32 tensors ``(n, 1, *patch_size)`` in HU;
    * ``positions1``, ``positions2``: int64 tensors ``(n * m, 4)``, rows
      ``[volume index, z, y, x]`` indexing ``patches1`` / ``patches2``; row i of both is
      the same voxel of the same volume (a positive pair);
    * ``keys``: the n case identifiers.

    The n volumes of a batch are different cases (paper sec. 3.1: "n different volumes");
    a dataset with fewer than n cases is sampled with replacement (with a warning).
    """

    def __init__(self, data: nnUNetBaseDataset, num_volumes: int, num_positions: int,
                 patch_size: Sequence[int], num_threads_in_multithreaded: int = 1,
                 seed: int | None = None) -> None:
        super().__init__(data, num_volumes, num_threads_in_multithreaded, seed_for_shuffle=None,
                         return_incomplete=False, shuffle=True, infinite=True)
        if len(patch_size) != 3 or any(int(p) <= 0 for p in patch_size):
            raise ValueError(f"patch_size must be 3 positive sizes (z, y, x), got {tuple(patch_size)}")
        if num_volumes <= 0 or num_positions <= 0:
            raise ValueError(f"num_volumes and num_positions must be positive, got {num_volumes} and {num_positions}")
        self.indices = list(data.identifiers)
        if not self.indices:
            raise ValueError(f"the pre-training dataset in {data.source_folder} has no cases")
        self.replace = len(self.indices) < num_volumes
        if self.replace:
            warnings.warn(f"the pre-training dataset in {data.source_folder} has {len(self.indices)} cases, fewer "
                          f"than the {num_volumes} volumes per batch: volumes are drawn with replacement",
                          stacklevel=2)
        self.num_volumes = num_volumes
        self.num_positions = num_positions
        self.patch_size = tuple(int(p) for p in patch_size)
        self.seed = seed
        self.rng = self._rng_for_thread(0)

    def _rng_for_thread(self, thread_id: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(thread_id,)))

    def set_thread_id(self, thread_id: int) -> None:
        """Called by batchgenerators' augmenters in each worker: give the worker its own stream."""
        super().set_thread_id(thread_id)
        self.rng = self._rng_for_thread(thread_id)

    def generate_train_batch(self) -> dict:
        n, m = self.num_volumes, self.num_positions
        selected = self.rng.choice(len(self.indices), size=n, replace=self.replace)
        keys = [self.indices[i] for i in selected]
        patches = [np.empty((n, 1, *self.patch_size), dtype=np.float32) for _ in range(2)]
        positions = [np.empty((n * m, 4), dtype=np.int64) for _ in range(2)]
        for volume, key in enumerate(keys):
            data, seg, _, _ = self._data.load_case(key)
            if data.shape[0] != 1 or tuple(seg.shape) != tuple(data.shape):
                raise ValueError(f"pre-training case {key!r} in {self._data.source_folder}: expected one CT channel "
                                 f"and a body mask of the same shape, got data {tuple(data.shape)} and seg "
                                 f"{tuple(seg.shape)}")
            try:
                pair = sample_pair(_SpatialView(seg), self.patch_size, m, self.rng)
            except ValueError as error:
                raise ValueError(f"pre-training case {key!r} in {self._data.source_folder}: {error}") from error
            rows = slice(volume * m, (volume + 1) * m)
            for view, (start, voxels) in enumerate(((pair.start1, pair.positions1), (pair.start2, pair.positions2))):
                bbox = [[s, s + p] for s, p in zip(start, self.patch_size)]
                patches[view][volume] = crop_and_pad_nd(data, bbox, cast_cropped_to=np.float32)
                positions[view][rows, 0] = volume
                positions[view][rows, 1:] = voxels
        return {"patches1": torch.from_numpy(patches[0]), "patches2": torch.from_numpy(patches[1]),
                "positions1": torch.from_numpy(positions[0]), "positions2": torch.from_numpy(positions[1]),
                "keys": keys}
