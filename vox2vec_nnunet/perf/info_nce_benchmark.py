"""Blockwise :func:`vox2vec_nnunet.loss.info_nce` against the dense 2N x 2N formulation.

Run ``python -m vox2vec_nnunet.perf.info_nce_benchmark [--n 10240 --dim 128 --repeats 3]``.
Both implementations see the same seeded, L2-normalised (N, d) inputs (paper Sect. 3.3:
N = 10 volumes x ~1000 positions, d = 128) and run forward + backward to the inputs.

* Peak memory: each implementation runs in a fresh subprocess of this module. After the
  inputs exist and one warm-up pass at a small N has loaded every kernel, the peak-RSS
  counter is reset (``echo 5 > /proc/self/clear_refs``) and the number reported is the
  growth of the peak RSS (``VmHWM``) over the RSS at that moment (``VmRSS``), both read from
  ``/proc/self/status``, during one forward + backward at the full N.
* Time: wall time of forward + backward in this process, the two implementations
  alternating for ``--repeats`` rounds after one warm-up round each; the median is reported.
* Accuracy: maximum relative error of the blockwise value and gradients against the dense
  ones at the benchmark settings, and again in float64 at N = min(n, 2048); a gradient's
  relative error is max|g_blockwise - g_dense| / max|g_dense|.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vox2vec_nnunet.loss import info_nce

LossFn = Callable[[Tensor, Tensor, float], Tensor]
_TEMPERATURE = 0.1
_WARMUP_PAIRS = 64


def dense_info_nce(z1: Tensor, z2: Tensor, temperature: float = _TEMPERATURE) -> Tensor:
    """The baseline: 2N x 2N logits with the diagonal masked, cross-entropy to the
    positive (as the reference implementation computes it in one matrix)."""
    z = torch.cat([z1, z2])
    num_embeddings = z.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = (torch.arange(num_embeddings, device=z.device) + num_embeddings // 2) % num_embeddings
    return F.cross_entropy(logits, targets)


IMPLEMENTATIONS: dict[str, LossFn] = {"dense": dense_info_nce, "info_nce": info_nce}


def make_inputs(n: int, dim: int, dtype: torch.dtype, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Seeded L2-normalised positive pairs; z2 is a noisy copy of z1, as after training."""
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return (F.normalize(z1, dim=1).to(dtype).requires_grad_(),
            F.normalize(z2, dim=1).to(dtype).requires_grad_())


def forward_backward(loss_fn: LossFn, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    loss = loss_fn(z1, z2, _TEMPERATURE)
    grad1, grad2 = torch.autograd.grad(loss, (z1, z2))
    return loss.detach(), grad1, grad2


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def measure_peak_memory(name: str, n: int, dim: int, dtype: torch.dtype) -> int:
    """Peak RSS growth in bytes of one forward + backward (run inside the child process)."""
    loss_fn = IMPLEMENTATIONS[name]
    forward_backward(loss_fn, *make_inputs(_WARMUP_PAIRS, dim, dtype))
    z1, z2 = make_inputs(n, dim, dtype)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline = _status_kib("VmRSS")
    forward_backward(loss_fn, z1, z2)
    peak = _status_kib("VmHWM")
    return (peak - baseline) * 1024


def peak_memory_in_subprocess(name: str, args: argparse.Namespace) -> int:
    """Run :func:`measure_peak_memory` in a fresh interpreter and return its result."""
    command = [sys.executable, "-m", "vox2vec_nnunet.perf.info_nce_benchmark",
               "--n", str(args.n), "--dim", str(args.dim), "--dtype", args.dtype,
               "--threads", str(args.threads), "--memory-of", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(output.strip().splitlines()[-1])


def relative_errors(test: tuple[Tensor, ...], reference: tuple[Tensor, ...]) -> float:
    return max(((t - r).abs().max() / r.abs().max()).item() for t, r in zip(test, reference))


def time_alternating(args: argparse.Namespace, dtype: torch.dtype
                     ) -> tuple[dict[str, float], float]:
    """Median wall time per implementation and the max relative error of the last round."""
    z1, z2 = make_inputs(args.n, args.dim, dtype)
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    results: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    for round_index in range(args.repeats + 1):
        for name, loss_fn in IMPLEMENTATIONS.items():
            results.pop(name, None)
            start = time.perf_counter()
            results[name] = forward_backward(loss_fn, z1, z2)
            elapsed = time.perf_counter() - start
            if round_index > 0:  # round 0 is the warm-up
                times[name].append(elapsed)
    error = relative_errors(results["info_nce"], results["dense"])
    return {name: statistics.median(values) for name, values in times.items()}, error


def float64_error(args: argparse.Namespace) -> tuple[int, float]:
    n = min(args.n, 2048)
    z1, z2 = make_inputs(n, args.dim, torch.float64, seed=1)
    return n, relative_errors(forward_backward(info_nce, z1, z2),
                              forward_backward(dense_info_nce, z1, z2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10240, help="positive pairs N (2N embeddings)")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension d")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads")
    parser.add_argument("--memory-of", choices=sorted(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    if args.memory_of is not None:  # child process: print the peak memory growth only
        print(measure_peak_memory(args.memory_of, args.n, args.dim, dtype))
        return

    print(f"settings: N={args.n} pairs (2N={2 * args.n} embeddings), d={args.dim}, "
          f"dtype={args.dtype}, tau={_TEMPERATURE}, threads={torch.get_num_threads()}, "
          f"torch {torch.__version__}, device cpu, repeats={args.repeats}")
    memory = {name: peak_memory_in_subprocess(name, args) for name in IMPLEMENTATIONS}
    times, error = time_alternating(args, dtype)
    n64, error64 = float64_error(args)
    print("peak memory of forward+backward (peak-RSS growth, fresh subprocess each):")
    for name in IMPLEMENTATIONS:
        print(f"  {name:9s} {memory[name] / 2 ** 20:10.1f} MiB")
    print(f"wall time of forward+backward (median of {args.repeats}, alternating):")
    for name in IMPLEMENTATIONS:
        print(f"  {name:9s} {times[name]:10.3f} s")
    print(f"memory ratio info_nce/dense: {memory['info_nce'] / memory['dense']:.4f}")
    print(f"time ratio   info_nce/dense: {times['info_nce'] / times['dense']:.3f}")
    print(f"max relative error of value and gradients ({args.dtype}, N={args.n}): {error:.2e}")
    print(f"max relative error of value and gradients (float64, N={n64}): {error64:.2e}")


if __name__ == "__main__":
    main()
