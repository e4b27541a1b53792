"""Inference time of one patch through the FPN: as a batch of one, and as ``FPN3d`` runs it.

    python -m vox2vec_nnunet.perf.inference_tile_benchmark [--base_channels 8 --num_levels 5
        --patch 16 64 64 --threads 2 --repeats 5]

nnU-Net's sliding-window inference feeds one patch at a time. Alternating on the same weights
and patch (eval mode, no gradients): ``FPN3d.levels`` (PyTorch's choice of kernel for a batch of
one) against ``FPN3d.forward`` (a small patch run as a batch of two copies, see
``FPN3d.single_patch_is_slow``); prints the settings, the median times, their ratio and the
largest difference of the outputs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vox2vec_nnunet.network.fpn import FPN3d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_channels", type=int, default=8)
    p.add_argument("--num_levels", type=int, default=5)
    p.add_argument("--patch", type=int, nargs=3, default=[16, 64, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fpn = FPN3d(1, args.base_channels, args.num_levels).eval()
    patch = torch.randn(1, 1, *args.patch)
    runs = {"batch of one (FPN3d.levels)": fpn.levels, "FPN3d.forward": fpn.forward}
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    with torch.no_grad():
        for name, run in runs.items():
            outputs[name] = run(patch)  # warm-up
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run(patch)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    difference = max((a - b).abs().max().item() for a, b in zip(*outputs.values()))
    print(f"FPN {args.base_channels} x {args.num_levels}, one patch of {' x '.join(map(str, args.patch))}, "
          f"{args.threads} thread(s), {args.repeats} repeats, eval mode; doubled by forward: "
          f"{fpn.single_patch_is_slow(patch)}")
    for name, median in medians.items():
        print(f"  {name}: {median:.3f} s (median)")
    print(f"ratio forward / batch of one: {medians['FPN3d.forward'] / medians['batch of one (FPN3d.levels)']:.3f}; "
          f"largest output difference {difference:.2e}")


if __name__ == "__main__":
    main()
