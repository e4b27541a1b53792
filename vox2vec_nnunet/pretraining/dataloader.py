"""Pre-training data loader on nnU-Net's data stack (paper sec. 3.1).

Each batch holds, for n different volumes, two overlapping HU patches and m positive pairs
of voxels between them (:func:`vox2vec_nnunet.pretraining.sampling.sample_pair`).
Volumes come from an nnU-Net preprocessed dataset (``nnUNetDatasetBlosc2`` or
``nnUNetDatasetNumpy``): ``load_case`` gives the CT ``data`` (1, z, y, x) in HU and a ``seg``
of the same shape that, in the pre-training dataset written by the preparation step, holds
the body mask (1 = body, 0 = background; paper sec. 3.1). Arrays follow the convention of
:mod:`vox2vec_nnunet.pretraining.body_mask`: slice axis first. A scan shorter than the patch
along an axis is padded with air (:data:`AIR_HU`). A scan of several channels ``(C, z, y, x)``
gives patches of all its channels at the same place; a channel stored z-scored (not CT) is
padded with 0, as nnU-Net pads normalised data (:func:`pad_values`).

Batches are a pure function of the run's seed and the global iteration i, whatever the
number of processes (ranks) and data workers:

* the n case slots of iteration i: :func:`case_slots` (n different cases when the dataset has
  at least n, else drawn with replacement);
* slot j's pair sampling, and the augmentation seeds of its two views: :func:`slot_streams`;
* rank r of W takes the contiguous slots ``[r * n / W, (r + 1) * n / W)``, so W ranks hold
  exactly the batch of one process (W must divide n);
* worker t of T makes the iterations ``start + t + k * T``; with batchgenerators' ordered
  ``MultiThreadedAugmenter`` (one queue per worker, read round-robin from worker 0) the
  batches arrive in iteration order. nnU-Net's ``NonDetMultiThreadedAugmenter`` would return
  them in the order they finish.

Every stream is ``numpy.random.SeedSequence(seed, spawn_key=(i, j, purpose))``: a fixed-length
key, because SeedSequence ignores trailing zero words of its entropy, so
``SeedSequence([seed, i])`` and ``SeedSequence([seed, i, 0])`` would be the same stream.

No augmentation happens here: the patches stay in HU and each batch carries the per-patch
seeds with which :class:`vox2vec_nnunet.pretraining.augmentation.IntensityAugmentation`
augments them, in the CPU workers or on the training device.
"""
from __future__ import annotations

import multiprocessing
import os
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.utilities.file_and_folder_operations import load_pickle
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetBaseDataset

from vox2vec_nnunet.channels import HU_KEPT, ZSCORE_NORMALIZATION
from vox2vec_nnunet.pretraining.sampling import sample_pair

AIR_HU = -1000.0
"""Intensity of the voxels a patch gets beyond the edge of its scan (a scan shorter than the
patch along an axis): air, which is what surrounds a patient in a CT. nnU-Net pads its
patches the same way (``crop_and_pad_nd`` with a constant pad value). Padding is never body,
so no positive pair lands on it (paper sec. 3.1 samples body voxels only)."""

PAD_VALUE_OF_SCHEME = {HU_KEPT: AIR_HU, ZSCORE_NORMALIZATION: 0.0}
"""What lies beyond a scan's edge, by the normalisation its channel is stored with: air for CT
in HU, the mean (0) for a z-scored channel, which nnU-Net's loaders pad with 0 too."""


def pad_values(schemes: Sequence[str]) -> tuple[float, ...]:
    """Per channel, the pad value of pre-training data stored with the plans' ``schemes``."""
    unknown = [s for s in schemes if s not in PAD_VALUE_OF_SCHEME]
    if unknown:
        raise ValueError(f"pre-training data holds channels stored with {unknown}; only {sorted(PAD_VALUE_OF_SCHEME)} "
                         f"are pre-trained on")
    return tuple(PAD_VALUE_OF_SCHEME[s] for s in schemes)


PAIR_SAMPLING, VIEW1_AUGMENTATION, VIEW2_AUGMENTATION, CASE_SLOTS = range(4)
"""The purposes of the random streams of one iteration (last word of the spawn key)."""

MAX_SEED = 2 ** 63 - 1
"""Seeds are non-negative 63-bit integers (they fit int64 tensors and torch generators)."""


def _stream(seed: int, iteration: int, slot: int, purpose: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(iteration, slot, purpose))


def case_slots(seed: int, iteration: int, num_cases: int, num_volumes: int) -> np.ndarray:
    """Indices into the sorted case identifiers of the ``num_volumes`` slots of ``iteration``.

    Different cases when ``num_cases >= num_volumes`` (paper sec. 3.1: "n different
    volumes"), else drawn with replacement.
    """
    rng = np.random.default_rng(_stream(seed, iteration, 0, CASE_SLOTS))
    return rng.choice(num_cases, size=num_volumes, replace=num_cases < num_volumes)


def slot_streams(seed: int, iteration: int, slot: int) -> tuple[np.random.Generator, int, int]:
    """Slot ``slot`` of ``iteration``: its pair-sampling generator and the augmentation seeds
    of its two views (63-bit integers)."""
    views = [int(_stream(seed, iteration, slot, purpose).generate_state(1, np.uint64)[0] >> np.uint64(1))
             for purpose in (VIEW1_AUGMENTATION, VIEW2_AUGMENTATION)]
    return np.random.default_rng(_stream(seed, iteration, slot, PAIR_SAMPLING)), views[0], views[1]


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

    ``Vox2VecPairDataLoader(data, num_volumes, num_positions, patch_size, *, seed, rank=0,
    world_size=1, start_iteration=0, num_threads_in_multithreaded=1)``:

    * ``data``: an nnU-Net dataset (``nnUNetDatasetBlosc2``/``nnUNetDatasetNumpy``) whose
      ``seg`` is the body mask;
    * ``num_volumes``: n, the volumes (slots) of one global iteration, over all ranks;
    * ``num_positions``: m, positive pairs per volume; every case must have at least m body
      voxels (checked here, from the ``vox2vec_body_voxels`` property the preparation
      stores, else by counting), else ValueError naming the case;
    * ``patch_size``: (z, y, x);
    * ``channel_pad_values``: per channel of the cases, what a patch holds beyond the scan's
      edge (:func:`pad_values`); its length is the number of channels every case must have;
    * ``seed``: the run's seed, 0 <= seed < 2**63;
    * ``rank``, ``world_size``: this process takes slots ``[rank * n / W, (rank + 1) * n / W)``
      (W must divide n);
    * ``start_iteration``: the first global iteration (a resumed run continues the stream);
    * ``num_threads_in_multithreaded``: T, the number of workers of the augmenter that runs
      it; worker t makes iterations ``start_iteration + t + k * T``. With
      ``SingleThreadedAugmenter`` (or plain ``next``) use T = 1.

    ``generate_train_batch()`` (``next(loader)``) returns the next iteration's batch,
    ``generate_batch(i)`` that of iteration i; with b = n / W local volumes, a dict of

    * ``patches1``, ``patches2``: float32 tensors ``(b, C, *patch_size)`` as stored (CT in HU);
    * ``positions1``, ``positions2``: int64 tensors ``(b * m, 4)``, rows
      ``[volume index, z, y, x]`` indexing ``patches1`` / ``patches2``; row i of both is
      the same voxel of the same volume (a positive pair);
    * ``augmentation_seeds``: int64 tensor ``(b, 2)``, the augmentation seeds of each
      volume's view 1 and view 2;
    * ``keys``: the b case identifiers;
    * ``iteration``: the global iteration (int).

    A dataset with fewer than n cases is sampled with replacement (with a warning).
    """

    def __init__(self, data: nnUNetBaseDataset, num_volumes: int, num_positions: int, patch_size: Sequence[int], *,
                 seed: int, channel_pad_values: Sequence[float] = (AIR_HU,), rank: int = 0, world_size: int = 1,
                 start_iteration: int = 0, num_threads_in_multithreaded: int = 1) -> None:
        if num_volumes <= 0 or num_positions <= 0:
            raise ValueError(f"num_volumes and num_positions must be positive, got {num_volumes} and {num_positions}")
        if world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of world_size {world_size}")
        if num_volumes % world_size:
            raise ValueError(f"num_volumes={num_volumes} volumes per iteration cannot be split evenly over "
                             f"{world_size} processes; use a number of processes that divides it")
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        if start_iteration < 0 or num_threads_in_multithreaded <= 0:
            raise ValueError(f"start_iteration must be >= 0 and num_threads_in_multithreaded > 0, got "
                             f"{start_iteration} and {num_threads_in_multithreaded}")
        if len(patch_size) != 3 or any(int(p) <= 0 for p in patch_size):
            raise ValueError(f"patch_size must be 3 positive sizes (z, y, x), got {tuple(patch_size)}")
        local_volumes = num_volumes // world_size
        super().__init__(data, local_volumes, num_threads_in_multithreaded, seed_for_shuffle=None,
                         return_incomplete=False, shuffle=True, infinite=True)
        self.indices = sorted(data.identifiers)
        if not self.indices:
            raise ValueError(f"the pre-training dataset in {data.source_folder} has no cases")
        if len(self.indices) < num_volumes:
            warnings.warn(f"the pre-training dataset in {data.source_folder} has {len(self.indices)} cases, fewer "
                          f"than the {num_volumes} volumes per batch: volumes are drawn with replacement",
                          stacklevel=2)
        self.num_volumes = num_volumes
        self.num_positions = num_positions
        self.patch_size = tuple(int(p) for p in patch_size)
        if not channel_pad_values:
            raise ValueError("channel_pad_values needs one value per channel")
        self.channel_pad_values = tuple(float(v) for v in channel_pad_values)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.local_slots = range(rank * local_volumes, (rank + 1) * local_volumes)
        self.start_iteration = start_iteration
        self.next_iteration = start_iteration
        self._check_body_voxels()

    def _check_body_voxels(self) -> None:
        """Every case must offer m distinct body voxels (the preparation skips those that cannot).

        Reads each case's properties file (``{identifier}.pkl``, as nnU-Net's datasets do);
        only a case without the count the preparation stores has its mask counted.
        """
        for key in self.indices:
            count = load_pickle(os.path.join(self._data.source_folder, f"{key}.pkl")).get("vox2vec_body_voxels")
            if count is None:
                count = int(np.count_nonzero(np.asarray(self._data.load_case(key)[1][0])))
            if count < self.num_positions:
                raise ValueError(f"pre-training case {key!r} in {self._data.source_folder} has {count} body voxels, "
                                 f"fewer than the m = {self.num_positions} distinct positions a pair samples; "
                                 f"prepare the data again with vox2vec_nnunet_prepare_pretraining --num_positions "
                                 f"{self.num_positions} (it skips such scans) or remove the case")

    def set_thread_id(self, thread_id: int) -> None:
        """Called by batchgenerators' augmenters in each worker: worker t starts at iteration start + t.

        In a worker process torch also gets one thread (nnU-Net's non-deterministic augmenter
        does that itself, the ordered one does not): the workers share the cores with the
        training process, and handing a batch's tensors to the main process copies them into
        shared memory, which with several threads per worker waits on busy cores.
        """
        if not 0 <= thread_id < self.number_of_threads_in_multithreaded:
            raise ValueError(f"worker {thread_id} of a loader made for {self.number_of_threads_in_multithreaded} "
                             f"workers; pass num_threads_in_multithreaded = the augmenter's number of workers")
        super().set_thread_id(thread_id)
        self.next_iteration = self.start_iteration + thread_id
        if multiprocessing.parent_process() is not None:
            torch.set_num_threads(1)

    def generate_train_batch(self) -> dict:
        iteration = self.next_iteration
        self.next_iteration += self.number_of_threads_in_multithreaded
        return self.generate_batch(iteration)

    def _crop(self, data: Any, start: Sequence[int]) -> np.ndarray:
        """The patch of every channel at ``start``, each channel padded with its own value."""
        bbox = [[s, s + p] for s, p in zip(start, self.patch_size)]
        patch = crop_and_pad_nd(data, bbox, pad_value=0.0, cast_cropped_to=np.float32)
        shape = data.shape[1:]
        if all(0 <= s and s + p <= n for s, p, n in zip(start, self.patch_size, shape)):
            return patch
        inside = tuple(slice(max(0, -s), min(p, n - s)) for s, p, n in zip(start, self.patch_size, shape))
        for channel, value in enumerate(self.channel_pad_values):
            if value != 0.0:
                kept = patch[channel][inside].copy()
                patch[channel] = value
                patch[channel][inside] = kept
        return patch

    def generate_batch(self, iteration: int) -> dict:
        """The batch of global iteration ``iteration`` for this rank (see the class docstring)."""
        n, m, b = self.num_volumes, self.num_positions, len(self.local_slots)
        slots = case_slots(self.seed, iteration, len(self.indices), n)
        keys = [self.indices[slots[j]] for j in self.local_slots]
        channels = len(self.channel_pad_values)
        patches = [np.empty((b, channels, *self.patch_size), dtype=np.float32) for _ in range(2)]
        positions = [np.empty((b * m, 4), dtype=np.int64) for _ in range(2)]
        seeds = np.empty((b, 2), dtype=np.int64)
        for volume, (slot, key) in enumerate(zip(self.local_slots, keys)):
            rng, seeds[volume, 0], seeds[volume, 1] = slot_streams(self.seed, iteration, slot)
            data, seg, _, _ = self._data.load_case(key)
            if data.shape[0] != channels or tuple(seg.shape) != (1, *data.shape[1:]):
                raise ValueError(f"pre-training case {key!r} in {self._data.source_folder}: expected {channels} "
                                 f"channel(s) and a body mask of the same spatial shape, got data {tuple(data.shape)} "
                                 f"and seg {tuple(seg.shape)}")
            try:
                pair = sample_pair(_SpatialView(seg), self.patch_size, m, rng)
            except ValueError as error:
                raise ValueError(f"pre-training case {key!r} in {self._data.source_folder}: {error}") from error
            rows = slice(volume * m, (volume + 1) * m)
            for view, (start, voxels) in enumerate(((pair.start1, pair.positions1), (pair.start2, pair.positions2))):
                patches[view][volume] = self._crop(data, start)
                positions[view][rows, 0] = volume
                positions[view][rows, 1:] = voxels
        return {"patches1": torch.from_numpy(patches[0]), "patches2": torch.from_numpy(patches[1]),
                "positions1": torch.from_numpy(positions[0]), "positions2": torch.from_numpy(positions[1]),
                "augmentation_seeds": torch.from_numpy(seeds), "keys": keys, "iteration": iteration}
