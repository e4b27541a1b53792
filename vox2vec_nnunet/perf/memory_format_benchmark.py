"""Training-step time of the FPN in channels-last vs the default memory layout, side by side.

    python -m vox2vec_nnunet.perf.memory_format_benchmark [--base_channels 8 --num_levels 5
        --batch 8 --patch 16 64 64 --repeats 3]

One pre-training step (forward, InfoNCE on 2 x 1,024 voxel pairs, backward) of the same
weights on the same batch, alternating the two layouts; prints the settings, the median times
and their ratio. This is why ``FPN3d`` keeps its weights and activations channels-last.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from vox2vec_nnunet.loss import info_nce
from vox2vec_nnunet.network.vox2vec import Vox2Vec


def step_seconds(model: Vox2Vec, patches: torch.Tensor, positions: torch.Tensor) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    info_nce(*model(patches, positions).chunk(2)).backward()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_channels", type=int, default=8)
    p.add_argument("--num_levels", type=int, default=5)
    p.add_argument("--batch", type=int, default=8, help="patches per step (2 views x volumes)")
    p.add_argument("--patch", type=int, nargs=3, default=[16, 64, 64])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    channels_last = Vox2Vec(1, args.base_channels, args.num_levels)
    default = Vox2Vec(1, args.base_channels, args.num_levels).to(memory_format=torch.contiguous_format)
    default.load_state_dict(channels_last.state_dict())
    default.backbone.memory_format = torch.contiguous_format
    patches = torch.randn(args.batch, 1, *args.patch)
    n = 2048
    positions = torch.stack([torch.randint(0, args.batch, (n,))] +
                            [torch.randint(0, s, (n,)) for s in args.patch], 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, FPN {args.base_channels} base channels x "
          f"{args.num_levels} levels, batch {args.batch} x {args.patch}, {n // 2} positive pairs, "
          f"{args.repeats} repeats after one warm-up")
    times: dict[str, list[float]] = {"channels_last_3d": [], "contiguous": []}
    for model in (channels_last, default):
        step_seconds(model, patches, positions)
    for _ in range(args.repeats):
        times["channels_last_3d"].append(step_seconds(channels_last, patches, positions))
        times["contiguous"].append(step_seconds(default, patches, positions))
    medians = {k: statistics.median(v) for k, v in times.items()}
    for k, v in medians.items():
        print(f"{k:>17}: {v:.3f} s per step (median)")
    print(f"ratio channels_last_3d / contiguous: {medians['channels_last_3d'] / medians['contiguous']:.3f}")


if __name__ == "__main__":
    main()
