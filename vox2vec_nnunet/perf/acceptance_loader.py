"""Part 2 of the GPU acceptance run: batches per second of the pre-training trainer's own loader.

    python -m vox2vec_nnunet.perf.acceptance_loader --json OUT.json -d DATASET -tr TRAINER
        [-p Vox2VecPlans -c 3d_vox2vec_pretrain] [--workers 2 6 12] [--device cuda]

The trainer is built as ``nnUNetv2_train`` builds it (nnU-Net's ``get_trainer_from_args``) and
initialised; for each number of workers W, ``nnUNet_n_proc_DA`` is set to W and the trainer's
own ``get_dataloaders`` makes the loader it would train with: batchgenerators' ordered
``MultiThreadedAugmenter`` with W worker processes over the prepared dataset, n volumes x m
positions of the trainer, the intensity augmentation on the device when it is CUDA (else in
the workers), batches pinned on CUDA. Measured: after one batch from every worker (their
start), the batches per second that reach the training process over ``max(--min_batches,
--batches_per_worker x W)`` batches. No training step runs meanwhile, so this is the rate the
loader can sustain, to be set against the step's rate (part 1).
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import torch

from vox2vec_nnunet.perf.augmenter_order_benchmark import _ignore_shutdown_race


def loader_rate(trainer, workers: int, args: argparse.Namespace) -> dict:
    os.environ["nnUNet_n_proc_DA"] = str(workers)
    train, _ = trainer.get_dataloaders()
    try:
        begin = time.perf_counter()
        for _ in range(workers):
            next(train)
        started = time.perf_counter() - begin
        count = max(args.min_batches, args.batches_per_worker * workers)
        begin = time.perf_counter()
        for _ in range(count):
            next(train)
        seconds = time.perf_counter() - begin
    finally:
        if hasattr(train, "_finish"):
            train._finish()
    return {"batches_per_second": count / seconds, "batches": count, "seconds": seconds,
            "first_batches_seconds": started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    parser.add_argument("-d", "--dataset", required=True, help="the prepared pre-training dataset")
    parser.add_argument("-tr", "--trainer", required=True, help="the pre-training trainer whose loader to run")
    parser.add_argument("-p", "--plans", default="Vox2VecPlans")
    parser.add_argument("-c", "--configuration", default="3d_vox2vec_pretrain")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 6, 12])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches_per_worker", type=int, default=3)
    parser.add_argument("--min_batches", type=int, default=20)
    args = parser.parse_args(argv)

    from nnunetv2.run.run_training import get_trainer_from_args

    threading.excepthook = _ignore_shutdown_race  # batchgenerators' shutdown race (see that benchmark)
    trainer = get_trainer_from_args(args.dataset, args.configuration, "all", args.trainer, args.plans,
                                    device=torch.device(args.device))
    trainer.initialize()
    rates = {}
    for workers in args.workers:
        rates[str(workers)] = loader_rate(trainer, workers, args)
        print(f"{workers} workers: {rates[str(workers)]['batches_per_second']:.2f} batches/s", flush=True)
    result = {"workers": rates, "cpu_count": os.cpu_count(), "trainer": args.trainer, "device": str(trainer.device),
              "volumes": trainer.num_volumes, "positions": trainer.num_positions,
              "patch": [int(p) for p in trainer.configuration_manager.patch_size],
              "augmentation": "on the device" if trainer._uses_device_augmentation() else "in the CPU workers",
              "pin_memory": trainer.device.type == "cuda"}
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
