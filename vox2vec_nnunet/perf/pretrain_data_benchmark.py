"""Pre-training data throughput: can the loader feed the step? (paper settings, clinical-size data)

    python -m vox2vec_nnunet.perf.pretrain_data_benchmark -d 961 [--augment cpu|device]
        [--volumes 10 --positions 1000 --patch 32 128 128] [--batches 20] [--workers 1 2]
        [--step_seconds S] [--node_workers 12 --node_step_seconds 0.15] [--profile]

Runs the real pre-training loader (:class:`vox2vec_nnunet.pretraining.dataloader.Vox2VecPairDataLoader`)
on a dataset written by ``vox2vec_nnunet_prepare_pretraining`` (nnU-Net's dataset class on disk,
as the trainer opens it), with the trainer's worker-side augmentation when ``--augment cpu``
(``Vox2VecPretrainTrainer.augmentation`` in one thread per worker, as ``AugmentInWorkers``) or
none when ``--augment device`` (the GPU augments in the step). Every worker is a process of its
own with one torch thread, as nnU-Net's augmenter workers are.

Prints, side by side:

* batches/s of one worker, and of ``--workers`` workers running at once on this machine
  (total and per worker: what the cores sustain together); each worker first produces one
  untimed batch, then ``--batches`` timed ones; and the batches/s that reach the training
  process through batchgenerators' ordered ``MultiThreadedAugmenter`` with as many workers
  (the trainer's set-up: each batch is copied to the training process through shared memory);
* the step time the loader must feed: ``--step_seconds`` (a GPU's), else measured here on the
  CPU: one pre-training step of the paper's FPN (16 x 6) on ``--step_volumes`` volumes,
  extrapolated linearly to n volumes (the CPU cannot hold the paper's n = 10 at once; see
  ``python -m vox2vec_nnunet.perf.pretrain_step_benchmark --memory``);
* the workers needed for 2x headroom: ceil(2 x (1 / step time) / batches/s of one worker),
  taking for one worker the lower of its own rate and its rate through the augmenter;
* the verdict for a GPU node: ``--node_workers`` workers (12 of a 16-core node) at
  ``--node_step_seconds`` per iteration (0.15 s, an H100 bf16 step): their total rate must be
  at least twice 1 / 0.15 s = 13.3 batches/s. It assumes a worker on the node is as fast as
  one here and that the node's cores do not slow each other (``--workers`` shows how far that
  holds on this machine).

``--profile`` prints where one worker's time goes (cProfile, cumulative time).
"""
from __future__ import annotations

import argparse
import cProfile
import math
import multiprocessing
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from vox2vec_nnunet.errors import Vox2VecError, command
from vox2vec_nnunet.nnunet_env import dataset_name, require_path_variable
from vox2vec_nnunet_plans.builder import PRETRAINING_CONFIGURATION

PAPER_STEP_FPN = (16, 6)


def data_folder(args: argparse.Namespace) -> Path:
    if args.folder is not None:
        return args.folder
    root = require_path_variable("nnUNet_preprocessed")
    return root / dataset_name(args.dataset) / f"{args.plans}_{PRETRAINING_CONFIGURATION}"


def make_loader(folder: Path, args: argparse.Namespace, seed: int, workers: int = 1):
    """The trainer's loader (for ``workers`` augmenter workers) and worker transform on the
    prepared dataset, as ``Vox2VecPretrainTrainer.get_dataloaders`` builds them."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from vox2vec_nnunet.pretraining.dataloader import Vox2VecPairDataLoader
    from vox2vec_nnunet.training.pretraining import AugmentInWorkers, Vox2VecPretrainTrainer

    dataset_class = infer_dataset_class(str(folder))
    dataset = dataset_class(str(folder), sorted(dataset_class.get_identifiers(str(folder))))
    loader = Vox2VecPairDataLoader(dataset, args.volumes, args.positions, tuple(args.patch), seed=seed,
                                   num_threads_in_multithreaded=workers)
    transform = AugmentInWorkers(Vox2VecPretrainTrainer.augmentation) if args.augment == "cpu" else None
    return loader, transform


def through_augmenter(folder: Path, args: argparse.Namespace, workers: int) -> float:
    """Batches per second that reach this process through batchgenerators' ordered augmenter
    with ``workers`` worker processes, as the trainer reads them (``num_cached_per_queue=2``,
    no pinned memory on the CPU): after one batch from every worker, ``--batches`` per worker."""
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

    from vox2vec_nnunet.perf.augmenter_order_benchmark import _ignore_shutdown_race

    loader, transform = make_loader(folder, args, seed=0, workers=workers)
    augmenter = MultiThreadedAugmenter(loader, transform, num_processes=workers, num_cached_per_queue=2, seeds=None,
                                       pin_memory=False, wait_time=0.002)
    threading.excepthook = _ignore_shutdown_race  # batchgenerators' shutdown race, as in that benchmark
    try:
        for _ in range(workers):
            next(augmenter)
        count = args.batches * workers
        begin = time.perf_counter()
        for _ in range(count):
            next(augmenter)
        return count / (time.perf_counter() - begin)
    finally:
        augmenter._finish()


def next_batch(loader, transform) -> dict:
    batch = loader.generate_train_batch()
    return transform(**batch) if transform is not None else batch


def worker_rate(folder: Path, args: argparse.Namespace, seed: int, start, results) -> None:
    """Batches per second of one worker process (run in a child; ``start`` lines the workers up)."""
    torch.set_num_threads(1)
    np.random.seed(seed)
    loader, transform = make_loader(folder, args, seed)
    next_batch(loader, transform)  # opens the cases, warms the caches
    start.wait()
    times = []
    for _ in range(args.batches):
        begin = time.perf_counter()
        next_batch(loader, transform)
        times.append(time.perf_counter() - begin)
    results.put((seed, statistics.median(times), sum(times)))


def measure_workers(folder: Path, args: argparse.Namespace, workers: int) -> list[tuple[float, float]]:
    """(median seconds per batch, total seconds) of each of ``workers`` concurrent workers."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=worker_rate, args=(folder, args, 1000 + w, start, results))
                 for w in range(workers)]
    for p in processes:
        p.start()
    out = [results.get() for _ in processes]
    for p in processes:
        p.join()
    return [(median, total) for _, median, total in sorted(out)]


def cpu_step_seconds(args: argparse.Namespace) -> float:
    """One pre-training step of the paper's FPN on ``--step_volumes`` volumes here, scaled to n."""
    from vox2vec_nnunet.perf.pretrain_step_benchmark import (LEARNING_RATE, TEMPERATURE, make_batch, make_step,
                                                             pretraining_optimizer)
    from vox2vec_nnunet.loss import info_nce
    from vox2vec_nnunet.network.vox2vec import Vox2Vec

    torch.manual_seed(0)
    model = Vox2Vec(1, *PAPER_STEP_FPN)
    patches, positions = make_batch(args.step_volumes, args.positions, tuple(args.patch))
    step = make_step(model, pretraining_optimizer(model.parameters(), LEARNING_RATE),
                     lambda z1, z2: info_nce(z1, z2, TEMPERATURE), patches, positions)
    step()
    begin = time.perf_counter()
    step()
    return (time.perf_counter() - begin) * args.volumes / args.step_volumes


def profile_worker(folder: Path, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    loader, transform = make_loader(folder, args, seed=0)
    next_batch(loader, transform)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.batches):
        next_batch(loader, transform)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile_rows)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-d", "--dataset", help="pre-training dataset ID or name (in $nnUNet_preprocessed)")
    source.add_argument("--folder", type=Path, help="or the prepared data folder itself")
    parser.add_argument("-p", "--plans", default="Vox2VecPlans", help="plans name (default: %(default)s)")
    parser.add_argument("--volumes", type=int, default=10, help="n volumes per batch (paper: 10)")
    parser.add_argument("--positions", type=int, default=1000, help="m positions per volume (paper: 1000)")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 128, 128], metavar=("Z", "Y", "X"),
                        help="patch, slice axis first (paper: 32 128 128 at 1x1x2 mm)")
    parser.add_argument("--augment", choices=["cpu", "device"], default="cpu",
                        help="cpu: the intensity augmentation runs in the workers (CPU training); device: on "
                             "the GPU in the step (default on CUDA), not in the workers")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="numbers of workers to run at once (default: 1 2)")
    parser.add_argument("--step_seconds", type=float, default=None,
                        help="the step time to feed (a GPU's); default: measured here on the CPU")
    parser.add_argument("--step_volumes", type=int, default=1, help="volumes of the CPU step measurement")
    parser.add_argument("--node_workers", type=int, default=12, help="data workers of the GPU node (16 cores)")
    parser.add_argument("--node_step_seconds", type=float, default=0.15, help="the GPU node's step time")
    parser.add_argument("--profile", action="store_true", help="cProfile one worker instead")
    parser.add_argument("--profile_rows", type=int, default=30)
    args = parser.parse_args(argv)
    folder = data_folder(args)
    if not folder.is_dir():
        raise Vox2VecError(f"{folder} does not exist; prepare it with vox2vec_nnunet_prepare_pretraining")

    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    cases = infer_dataset_class(str(folder)).get_identifiers(str(folder))
    print(f"settings: {folder} ({len(cases)} cases), n={args.volumes} volumes x m={args.positions} positions, patch "
          f"{args.patch}, augmentation {'in the workers (CPU)' if args.augment == 'cpu' else 'on the device'}, "
          f"{args.batches} timed batches per worker, 1 torch thread per worker, {multiprocessing.cpu_count()} "
          f"CPUs here")
    if args.profile:
        profile_worker(folder, args)
        return 0

    rates, delivered = {}, {}
    for workers in args.workers:
        measured = measure_workers(folder, args, workers)
        per_worker = [1.0 / median for median, _ in measured]
        rates[workers] = statistics.mean(per_worker)
        delivered[workers] = through_augmenter(folder, args, workers) / workers
        print(f"  {workers} worker(s) at once: {sum(per_worker):6.2f} batches/s in total, "
              f"{rates[workers]:5.2f} per worker (median batch time {statistics.mean(m for m, _ in measured):.3f} "
              f"s); through the trainer's ordered augmenter {workers * delivered[workers]:6.2f} batches/s reach the "
              f"training process ({delivered[workers]:.2f} per worker)")
    fewest = min(args.workers)
    one = min(rates[fewest], delivered[fewest])
    print(f"one worker: {one:.2f} batches/s (the lower of its own rate and its rate through the augmenter, with "
          f"{fewest} worker(s) at once)")

    if args.step_seconds is not None:
        step, origin = args.step_seconds, "given (--step_seconds)"
    else:
        step = cpu_step_seconds(args)
        origin = (f"measured here: FPN {PAPER_STEP_FPN[0]}x{PAPER_STEP_FPN[1]} step on {args.step_volumes} "
                  f"volume(s), scaled to n={args.volumes}")
    needed = math.ceil(2.0 * (1.0 / step) / one)
    print(f"step time to feed: {step:.3f} s per iteration ({origin}); workers for 2x headroom: {needed} "
          f"(one worker: {one:.2f} batches/s)")
    node_rate = args.node_workers * one
    goal = 2.0 / args.node_step_seconds
    print(f"GPU node verdict: {args.node_workers} workers x {one:.2f} batches/s = {node_rate:.1f} batches/s against "
          f"the {goal:.1f} batches/s that 2x headroom at {args.node_step_seconds} s per iteration needs: "
          f"{'MET' if node_rate >= goal else 'NOT MET'} ({node_rate / goal:.2f}x of the goal; "
          f"{math.ceil(goal / one)} workers needed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
