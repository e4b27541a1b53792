"""Part 1 of the GPU acceptance run: the pre-training step of ours against the reference style on
the device, side by side, with its FLOPs, memory and share of the device's bfloat16 peak.

    python -m vox2vec_nnunet.perf.acceptance_step --json OUT.json [--device cuda] [--base_channels 16
        --num_levels 6 --volumes 10 --positions 1000 --patch 32 128 128 --repeats 5]

A step is what ``Vox2VecPretrainTrainer.train_step`` does on CUDA (paper Sect. 3.3, 4.1): the
batch of 2n patches (HU) and 2nm read-out positions, held in the host's memory as the data
workers deliver it, copied to the device; then

* ours: pinned host memory copied with ``non_blocking=True``, the intensity augmentation on the
  device (per-patch seeds, as the trainer does when the workers do not augment), the model as
  the trainer builds it (channels-last FPN, backbone in bfloat16 autocast, projector and loss in
  float32), the blockwise :func:`vox2vec_nnunet.loss.info_nce`, clipping, the trainer's Adam;
* reference style: pageable host memory copied with a blocking copy, patches already augmented
  (the reference augments in its CPU workers), float32, the default NCDHW layout, out-of-place
  ReLUs and sums, the dense 2N x 2N logits and ``torch.optim.Adam``
  (:class:`vox2vec_nnunet.perf.pretrain_step_benchmark.ReferenceStyleModel`, same weights).

Ours does more work than the reference style (the augmentation), so the ratio is conservative.
PyTorch's defaults otherwise (cuDNN may use TF32 for the float32 convolutions); cuDNN's
autotuner on, as ``nnUNetv2_train`` sets it. Timing: two warm-up steps each, then ``--repeats``
rounds alternating the two; medians of the wall time (``loss.item()`` waits for the device).
Memory: the peak of the memory allocated during one step above what was allocated before it
(on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the growth of the resident set,
``VmHWM``, after glibc's ``malloc_trim`` has returned the freed memory). FLOPs: one step of
each counted by ``torch.utils.flop_counter.FlopCounterMode`` (forward and backward of
convolutions and matrix products). The share of the peak: our
FLOPs per second against the device's dense bfloat16 tensor throughput from its data sheet
(:data:`DATASHEET_BF16_TFLOPS`) when the device is listed, else against a bfloat16 matrix
product measured here; both figures are written.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import re
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vox2vec_nnunet.loss import info_nce
from vox2vec_nnunet.network.vox2vec import Vox2Vec
from vox2vec_nnunet.perf.pretrain_step_benchmark import (LEARNING_RATE, TEMPERATURE, ReferenceStyleModel, Step,
                                                         _status_kib, dense_info_nce, make_batch, make_step,
                                                         pretraining_optimizer)
from vox2vec_nnunet.pretraining.augmentation import IntensityAugmentation

DATASHEET_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH100\b", 989.0),
    (r"\bGH200\b", 989.0),
    (r"\bH200\b", 989.0),
    (r"\bB200\b", 2250.0),
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
)
"""Dense (no sparsity) bfloat16 tensor-core TFLOP/s from NVIDIA's data sheets, by a pattern of
``torch.cuda.get_device_name()``; the first match counts (H100 SXM and H100 80GB HBM3: 989)."""

def datasheet_bf16_tflops(device_name: str) -> float | None:
    for pattern, tflops in DATASHEET_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_bf16_matmul_tflops(device: torch.device, size: int, repeats: int) -> float:
    """TFLOP/s of ``repeats`` bfloat16 ``size x size`` matrix products (after one warm-up)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    a @ b
    synchronize(device)
    begin = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - begin) / 1e12


def make_steps(args: argparse.Namespace, device: torch.device) -> dict[str, Step]:
    """Ours and the reference style, from the same weights and the same seeded batch."""
    torch.manual_seed(0)
    ours = Vox2Vec(1, args.base_channels, args.num_levels, backbone_autocast=True)
    reference = ReferenceStyleModel(ours)
    ours.to(device)
    reference.to(device)
    unit_patches, positions = make_batch(args.volumes, args.positions, tuple(args.patch))
    hu_patches = unit_patches * 2350.0 - 1350.0  # the HU the data workers deliver to ours
    seeds = torch.randint(0, 2 ** 62, (2 * args.volumes,), generator=torch.Generator().manual_seed(1))
    pinned = device.type == "cuda"  # torch 2.14 pins memory only with an accelerator
    return {
        "ours": make_step(ours, pretraining_optimizer(ours.parameters(), LEARNING_RATE),
                          lambda z1, z2: info_nce(z1, z2, TEMPERATURE),
                          hu_patches.pin_memory() if pinned else hu_patches,
                          positions.pin_memory() if pinned else positions, device,
                          IntensityAugmentation(), seeds, non_blocking=True),
        "reference_style": make_step(reference, torch.optim.Adam(reference.parameters(), lr=LEARNING_RATE),
                                     dense_info_nce, unit_patches, positions, device),
    }


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def step_memory(step: Step, device: torch.device) -> int:
    """Peak bytes allocated during one step above what was allocated before it."""
    free_memory(device)
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return torch.cuda.max_memory_allocated(device) - before
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory back to the system: the step's must be resident again
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    step()
    return (_status_kib("VmHWM") - before) * 1024


def step_flops(step: Step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    steps = make_steps(args, device)
    arms = {name: {"status": "ok"} for name in steps}
    for name, step in steps.items():
        try:
            for _ in range(2):
                step()
        except torch.OutOfMemoryError as error:
            arms[name] = {"status": "out of memory", "message": str(error).splitlines()[0]}
            free_memory(device)
    running = [name for name in steps if arms[name]["status"] == "ok"]
    times: dict[str, list[float]] = {name: [] for name in running}
    for _ in range(args.repeats):
        for name in running:
            begin = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - begin)
    for name in running:
        seconds = statistics.median(times[name])
        flops = step_flops(steps[name])
        arms[name].update(ms_per_iteration=1000 * seconds, peak_step_memory_bytes=step_memory(steps[name], device),
                          flops_per_iteration=flops, achieved_tflops=flops / seconds / 1e12)
    name = device_name(device)
    datasheet = datasheet_bf16_tflops(name) if device.type == "cuda" else None
    matmul = measured_bf16_matmul_tflops(device, args.matmul_size, args.matmul_repeats)
    peak, source = (datasheet, "data sheet") if datasheet is not None else (matmul, "measured bf16 matmul")
    result = {
        "device": str(device), "device_name": name, "arms": arms,
        "memory_kind": ("torch.cuda.max_memory_allocated above the allocation before the step" if device.type == "cuda"
                        else "growth of the resident set (VmHWM) during the step"),
        "datasheet_bf16_tflops": datasheet, "measured_bf16_matmul_tflops": matmul,
        "matmul_size": args.matmul_size, "peak_bf16_tflops": peak, "peak_source": source,
        "settings": {"base_channels": args.base_channels, "num_levels": args.num_levels, "volumes": args.volumes,
                     "positions": args.positions, "patch": list(args.patch), "repeats": args.repeats,
                     "cudnn_benchmark": device.type == "cuda", "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                     "threads": torch.get_num_threads()},
    }
    if len(running) == 2:
        ours, reference = (arms[arm]["ms_per_iteration"] for arm in ("ours", "reference_style"))
        result["ratio_ours_to_reference"] = ours / reference
    if "ours" in running:
        result["share_of_peak"] = arms["ours"]["achieved_tflops"] / peak
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--base_channels", type=int, default=16)
    parser.add_argument("--num_levels", type=int, default=6)
    parser.add_argument("--volumes", type=int, default=10, help="n volumes (2n patches)")
    parser.add_argument("--positions", type=int, default=1000, help="m positions per volume")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 128, 128], metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--matmul_size", type=int, default=8192, help="bfloat16 matrix product for the peak")
    parser.add_argument("--matmul_repeats", type=int, default=20)
    args = parser.parse_args(argv)
    result = measure(args)
    args.json.write_text(json.dumps(result, indent=2))
    for arm, figures in result["arms"].items():
        print(f"{arm}: {figures}")


if __name__ == "__main__":
    main()
