"""Pre-training batch throughput of batchgenerators' ordered augmenter vs nnU-Net's non-deterministic one.

    python -m vox2vec_nnunet.perf.augmenter_order_benchmark [--workers 2 --volumes 4 --positions 256
        --patch 16 64 64 --shape 40 128 128 --cases 8 --batches 40 --rounds 3 --augment workers]

``Vox2VecPretrainTrainer`` reads its data workers through the ordered ``MultiThreadedAugmenter``
(one queue per worker, read in turn), so that the batches arrive in iteration order and a
seeded run is repeatable; nnU-Net's trainers use ``NonDetMultiThreadedAugmenter`` (one shared
queue, first come first served). This runs the same loader (an nnU-Net blosc2 dataset of
synthetic CT volumes written to a temporary folder, pair sampling, and with ``--augment
workers`` the intensity augmentation in the workers, as on a CPU-only machine) through both,
alternating rounds, and prints the settings, the median batches per second and their ratio.
Both hold the same number of batches in flight (``--cache`` per worker for the ordered one,
``--cache`` x workers in the shared queue of the other). The ordered augmenter is slower when
one worker falls behind (the others wait for it in turn, once their own queues are full):
uneven cases, or a busy machine that schedules the workers unevenly.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

from vox2vec_nnunet.pretraining.body_mask import body_mask
from vox2vec_nnunet.pretraining.dataloader import Vox2VecPairDataLoader
from vox2vec_nnunet.training.pretraining import AugmentInWorkers, Vox2VecPretrainTrainer


def write_cases(folder: Path, count: int, shape: tuple[int, int, int], patch: tuple[int, int, int]) -> None:
    """Ellipsoidal soft-tissue bodies (40 HU, noise 20 HU) in air, of varying size, with body masks."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices(shape)
    for i in range(count):
        radii = np.array(shape) * rng.uniform(0.35, 0.48, 3)
        inside = sum(((c - s / 2) / r) ** 2 for c, s, r in zip((z, y, x), shape, radii)) <= 1
        image = (np.where(inside, 40.0, -1000.0) + rng.normal(0, 20, shape)).astype(np.float32)
        body = body_mask(image)
        blocks, chunks = comp_blosc2_params((1, *shape), patch, bytes_per_pixel=4)
        nnUNetDatasetBlosc2.save_case(image[None], body[None].astype(np.int8),
                                      {"vox2vec_body_voxels": int(body.sum())}, str(folder / f"case_{i:03d}"),
                                      chunks=chunks, blocks=blocks)


def _ignore_shutdown_race(args: threading.ExceptHookArgs) -> None:
    """batchgenerators' shutdown can stop a worker while the augmenter's results thread still
    receives its last tensor (a shared-memory handle); only that is silenced."""
    if not issubclass(args.exc_type, (FileNotFoundError, ConnectionError)):
        threading.__excepthook__(args)


def batches_per_second(augmenter, batches: int) -> float:
    next(augmenter)  # workers started and warm
    start = time.perf_counter()
    for _ in range(batches):
        next(augmenter)
    return batches / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--volumes", type=int, default=4, help="n, volumes per batch")
    p.add_argument("--positions", type=int, default=256, help="m, positions per volume")
    p.add_argument("--patch", type=int, nargs=3, default=[16, 64, 64])
    p.add_argument("--shape", type=int, nargs=3, default=[40, 128, 128], help="volume shape (z, y, x)")
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--batches", type=int, default=40, help="timed batches per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=int, default=2, help="batches in flight per worker (the trainer's: 2)")
    p.add_argument("--augment", choices=["workers", "none"], default="workers",
                   help="intensity augmentation in the workers (CPU training) or none (GPU training)")
    args = p.parse_args()
    threading.excepthook = _ignore_shutdown_race
    patch, shape = tuple(args.patch), tuple(args.shape)
    print(f"{args.workers} workers, {args.cases} cases of {list(shape)} voxels (blosc2), n={args.volumes} x "
          f"m={args.positions}, patch {list(patch)}, augmentation "
          f"{'in the workers' if args.augment == 'workers' else 'none'}, {args.batches} batches x {args.rounds} "
          f"rounds after one warm-up batch, alternating, {args.cache} batches in flight per worker")
    with tempfile.TemporaryDirectory() as tmp:
        write_cases(Path(tmp), args.cases, shape, patch)
        dataset = nnUNetDatasetBlosc2(tmp)
        transform = AugmentInWorkers(Vox2VecPretrainTrainer.augmentation) if args.augment == "workers" else None
        rates: dict[str, list[float]] = {"ordered (MultiThreadedAugmenter)": [],
                                         "non-deterministic (NonDetMultiThreadedAugmenter)": []}
        for _ in range(args.rounds):
            for name in rates:
                loader = Vox2VecPairDataLoader(dataset, args.volumes, args.positions, patch, seed=0,
                                               num_threads_in_multithreaded=args.workers)
                if name.startswith("ordered"):
                    augmenter = MultiThreadedAugmenter(loader, transform, args.workers,
                                                       num_cached_per_queue=args.cache, wait_time=0.002)
                else:
                    augmenter = NonDetMultiThreadedAugmenter(loader, transform, args.workers,
                                                             num_cached=args.cache * args.workers, wait_time=0.002)
                try:
                    rates[name].append(batches_per_second(augmenter, args.batches))
                finally:
                    augmenter._finish()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    for name, rate in medians.items():
        print(f"{name:>50}: {rate:.2f} batches/s (median; rounds {', '.join(f'{r:.2f}' for r in rates[name])})")
    ordered, nondet = medians.values()
    print(f"ratio ordered / non-deterministic: {ordered / nondet:.3f}")


if __name__ == "__main__":
    main()
