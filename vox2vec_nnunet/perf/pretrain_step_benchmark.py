"""A full pre-training step of ours against the reference style, side by side; the paper-scale
step's peak memory.

    python -m vox2vec_nnunet.perf.pretrain_step_benchmark [--base_channels 8 --num_levels 5
        --volumes 4 --positions 256 --patch 16 64 64 --repeats 7 --threads N]
    python -m vox2vec_nnunet.perf.pretrain_step_benchmark --profile      # where our step spends time
    python -m vox2vec_nnunet.perf.pretrain_step_benchmark --memory       # paper scale, see below

A step is what ``Vox2VecPretrainTrainer.train_step`` does (paper Sect. 3.3, 4.1): both views of
n volumes (2n patches) through the FPN, the m positions per volume read out and projected,
InfoNCE with tau = 0.1, backward, gradient-norm clipping at 1.0, one Adam step (lr 3e-4).

* ours: the model as the trainer builds it (:class:`vox2vec_nnunet.network.vox2vec.Vox2Vec`:
  channels-last FPN, in-place ReLUs and residual sums), the blockwise
  :func:`vox2vec_nnunet.loss.info_nce` and the trainer's optimiser (:func:`pretraining_optimizer`);
* reference style: the same model and weights in PyTorch's default NCDHW layout with
  out-of-place ReLUs and sums, voxels read out by advanced indexing (as ours), the dense
  InfoNCE over the 2N x 2N logits written below
  (independent of ours, as in ``tests/test_loss.py``) and ``torch.optim.Adam`` with its
  defaults, all float32 as the reference trains.

Both see the same seeded batch (random HU-like patches, positions drawn uniformly). Timing:
one warm-up step each, then ``--repeats`` rounds alternating the two; medians of the wall time
and of the process's CPU time (``time.process_time``, all threads), and their ratios.
The two models start from the same weights; each keeps its own optimiser state.

``--memory``: the paper's step (FPN 16 x 6, m = 1,000 positions per volume, 32 x 128 x 128
patches, ours) for n = 1, 2, 4 volumes (``--memory_volumes``), each in a fresh subprocess;
reported is the peak resident memory (``VmHWM`` of ``/proc/self/status``, the kernel's
high-water mark of the process) of a process that builds the model and the optimiser, runs
one warm-up step at n and then a measured step, minus the resident memory after the warm-up
step's model, optimiser state and batch exist: i.e. the step's transient memory. The linear
fit over n gives the figure for the paper's n = 10 (which does not fit in 24 GiB at once on
the CPU).
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
from torch import Tensor, nn

from vox2vec_nnunet.loss import info_nce
from vox2vec_nnunet.network.vox2vec import Vox2Vec

TEMPERATURE = 0.1
LEARNING_RATE = 3e-4
GRAD_CLIP = 1.0


def dense_info_nce(z1: Tensor, z2: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """The reference style: all 2N x 2N logits, self-similarity masked, cross-entropy to the
    counterpart in the other view."""
    z = torch.cat([z1, z2])
    num_pairs = z1.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * num_pairs, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(num_pairs, 2 * num_pairs), torch.arange(num_pairs)]).to(z.device)
    return F.cross_entropy(logits, targets)


class ReferenceStyleModel(nn.Module):
    """The same FPN and projector as :class:`Vox2Vec` (its weights copied in), computed the way
    plain PyTorch code writes it: the default NCDHW layout, out-of-place ReLUs and residual
    sums, and the voxel read-out as advanced indexing of every level (nearest cell, level 0
    first). The forward is written here, independent of :mod:`vox2vec_nnunet.network`."""

    def __init__(self, ours: Vox2Vec) -> None:
        super().__init__()
        backbone = ours.backbone
        self.model = Vox2Vec(backbone.in_channels, backbone.base_channels, backbone.num_levels,
                             ours.projector.layers[-1].out_features)
        self.model.load_state_dict(ours.state_dict())
        self.model.to(memory_format=torch.contiguous_format)

    @staticmethod
    def _block(block: nn.Module, x: Tensor) -> Tensor:
        norm1, _, conv1, norm2, _, conv2 = block.layers
        return x + conv2(F.relu(norm2(conv1(F.relu(norm1(x))))))

    def _stack(self, stack: nn.Module, x: Tensor) -> Tensor:
        for block in stack.layers:
            x = self._block(block, x)
        return x

    def backbone(self, x: Tensor) -> list[Tensor]:
        fpn = self.model.backbone
        x = fpn.first_conv(x)
        skips = []
        for left, down in zip(fpn.left_blocks, fpn.down_blocks):
            x = self._stack(left, x)
            skips.append(x)
            x = down(x)
        pyramid = [self._stack(fpn.bottom_block, x)]
        x = pyramid[0]
        for up, skip, right in zip(fpn.up_blocks, fpn.skip_blocks, fpn.right_blocks):
            feature = skips.pop()
            x = up(x)[:, :, :feature.shape[2], :feature.shape[3], :feature.shape[4]] + skip(feature)
            x = self._stack(right, x)
            pyramid.insert(0, x)
        return pyramid

    def forward(self, patches: Tensor, positions: Tensor) -> Tensor:
        pyramid = self.backbone(patches.contiguous())
        batch, coords = positions[:, 0], positions[:, 1:]
        features = [fmap[batch, :, *(coords >> level).unbind(1)] for level, fmap in enumerate(pyramid)]
        return self.model.projector(torch.cat(features, dim=1))


Step = Callable[[], float]


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[[Tensor, Tensor], Tensor],
              patches: Tensor, positions: Tensor, device: torch.device | None = None,
              augmentation: Callable[[Tensor, Tensor], Tensor] | None = None, seeds: Tensor | None = None,
              non_blocking: bool = False) -> Step:
    """One training step as the trainer runs it; returns the loss.

    With ``device`` the batch is held in the host's memory, as the data workers deliver it, and
    every step copies it there (``non_blocking`` from pinned memory) and, given an
    ``augmentation``, augments it there with the per-patch ``seeds`` (as the trainer does on
    CUDA); without, the batch is used where it is.
    """
    def step() -> float:
        x, p = patches, positions
        if device is not None:
            x, p = x.to(device, non_blocking=non_blocking), p.to(device, non_blocking=non_blocking)
        if augmentation is not None:
            with torch.no_grad():
                x = augmentation(x, seeds)
        optimizer.zero_grad(set_to_none=True)
        z1, z2 = model(x, p).chunk(2)
        loss = loss_fn(z1, z2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        return loss.item()
    return step


def make_batch(volumes: int, positions_per_volume: int, patch: tuple[int, int, int],
               seed: int = 0) -> tuple[Tensor, Tensor]:
    """2n patches (view 1 of every volume, then view 2) in [0, 1] like augmented CT, and the
    read-out positions of both views: rows [patch, z, y, x], view 2's rows after view 1's."""
    generator = torch.Generator().manual_seed(seed)
    patches = torch.rand(2 * volumes, 1, *patch, generator=generator)
    m = volumes * positions_per_volume
    volume = torch.arange(volumes).repeat_interleave(positions_per_volume)
    coords = [torch.stack([torch.randint(0, s, (m,), generator=generator) for s in patch], 1) for _ in range(2)]
    positions = torch.cat([torch.cat([volume[:, None], coords[0]], 1),
                           torch.cat([volume[:, None] + volumes, coords[1]], 1)])
    return patches, positions


def pretraining_optimizer(parameters, lr: float) -> torch.optim.Optimizer:
    """The optimiser ``Vox2VecPretrainTrainer.configure_optimizers`` builds."""
    return torch.optim.Adam(parameters, lr=lr, weight_decay=0.0)


def steps(args: argparse.Namespace) -> dict[str, Step]:
    torch.manual_seed(0)
    ours = Vox2Vec(1, args.base_channels, args.num_levels)
    reference = ReferenceStyleModel(ours)
    patches, positions = make_batch(args.volumes, args.positions, tuple(args.patch))
    return {
        "ours": make_step(ours, pretraining_optimizer(ours.parameters(), LEARNING_RATE),
                          lambda z1, z2: info_nce(z1, z2, TEMPERATURE), patches, positions),
        "reference_style": make_step(reference, torch.optim.Adam(reference.parameters(), lr=LEARNING_RATE),
                                     dense_info_nce, patches, positions),
    }


def time_alternating(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time (of this process, all threads) per step."""
    step_fns = steps(args)
    for step in step_fns.values():
        step()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in step_fns}
    for _ in range(args.repeats):
        for name, step in step_fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            times[name].append((time.perf_counter() - start, time.process_time() - start_cpu))
    return {name: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
            for name, values in times.items()}


def profile(args: argparse.Namespace) -> None:
    """torch.profiler table of our step (operators by self CPU time)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step = steps(args)[args.profile_of]
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.repeats):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def measure_step_memory(args: argparse.Namespace) -> tuple[int, int]:
    """(resident bytes before the measured step, peak growth in bytes during it); run in a
    fresh process (the ``--memory_of`` child)."""
    torch.manual_seed(0)
    model = Vox2Vec(1, args.base_channels, args.num_levels)
    patches, positions = make_batch(args.memory_of, args.positions, tuple(args.patch))
    step = make_step(model, pretraining_optimizer(model.parameters(), LEARNING_RATE),
                     lambda z1, z2: info_nce(z1, z2, TEMPERATURE), patches, positions)
    step()  # allocates the optimiser state and warms up the kernels
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current RSS
    baseline = _status_kib("VmRSS")
    step()
    return baseline * 1024, (_status_kib("VmHWM") - baseline) * 1024


def memory_report(args: argparse.Namespace) -> None:
    print(f"paper-scale step memory: FPN {args.base_channels} x {args.num_levels}, m={args.positions} positions "
          f"per volume, patch {args.patch}, ours, threads={torch.get_num_threads()}, float32 on the CPU")
    rows = []
    for n in args.memory_volumes:
        command = [sys.executable, "-m", "vox2vec_nnunet.perf.pretrain_step_benchmark", "--memory_of", str(n),
                   "--base_channels", str(args.base_channels), "--num_levels", str(args.num_levels),
                   "--positions", str(args.positions), "--patch", *map(str, args.patch),
                   "--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
        baseline, growth = int(output[-2]), int(output[-1])
        rows.append((n, baseline, growth))
        print(f"  n={n:2d} volumes ({2 * n} patches, {2 * n * args.positions} embeddings): resident before the "
              f"step {baseline / 2 ** 30:6.2f} GiB, peak growth during the step {growth / 2 ** 30:6.2f} GiB")
    if len(rows) >= 2:
        ns = torch.tensor([float(r[0]) for r in rows])
        growths = torch.tensor([float(r[2]) for r in rows])
        slope = float(((ns - ns.mean()) * (growths - growths.mean())).sum() / ((ns - ns.mean()) ** 2).sum())
        intercept = float(growths.mean() - slope * ns.mean())
        n = args.paper_volumes
        print(f"  linear fit: peak growth = {intercept / 2 ** 30:.2f} GiB + n x {slope / 2 ** 30:.2f} GiB; "
              f"at n={n}: {(intercept + slope * n) / 2 ** 30:.1f} GiB (plus the resident model, optimiser state "
              f"and batch, {rows[-1][1] / 2 ** 30:.2f} GiB at n={rows[-1][0]})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_channels", type=int, default=None, help="FPN base channels (8; 16 with --memory)")
    parser.add_argument("--num_levels", type=int, default=None, help="FPN levels (5; 6 with --memory)")
    parser.add_argument("--volumes", type=int, default=4, help="n: volumes per step (2n patches)")
    parser.add_argument("--positions", type=int, default=None, help="m: positions per volume (256; 1000 with --memory)")
    parser.add_argument("--patch", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                        help="patch size, slice axis first (16 64 64; 32 128 128 with --memory)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table instead")
    parser.add_argument("--profile_of", choices=["ours", "reference_style"], default="ours")
    parser.add_argument("--profile_rows", type=int, default=30)
    parser.add_argument("--memory", action="store_true", help="paper-scale step memory (see the description)")
    parser.add_argument("--memory_volumes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--paper_volumes", type=int, default=10)
    parser.add_argument("--memory_of", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    paper = args.memory or args.memory_of is not None
    defaults = {"base_channels": (16, 8), "num_levels": (6, 5), "positions": (1000, 256),
                "patch": ([32, 128, 128], [16, 64, 64])}
    for name, (paper_value, cpu_value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, paper_value if paper else cpu_value)
    torch.set_num_threads(args.threads)

    if args.memory_of is not None:  # child process: print the two numbers only
        print(*measure_step_memory(args))
        return
    if args.memory:
        memory_report(args)
        return
    print(f"settings: FPN {args.base_channels} base channels x {args.num_levels} levels, n={args.volumes} volumes "
          f"({2 * args.volumes} patches of {args.patch}) x m={args.positions} positions "
          f"({2 * args.volumes * args.positions} embeddings), tau={TEMPERATURE}, Adam lr {LEARNING_RATE}, "
          f"clip {GRAD_CLIP}, float32, device cpu, threads={torch.get_num_threads()}, torch {torch.__version__}, "
          f"{args.repeats} alternating rounds after one warm-up step each")
    if args.profile:
        profile(args)
        return
    medians = time_alternating(args)
    for name, (wall, cpu) in medians.items():
        print(f"  {name:16s} {wall:8.3f} s per step (median wall time), {cpu:8.3f} s CPU time")
    wall_ratio = medians["ours"][0] / medians["reference_style"][0]
    cpu_ratio = medians["ours"][1] / medians["reference_style"][1]
    print(f"ratio ours / reference_style: {wall_ratio:.3f} (wall time), {cpu_ratio:.3f} (CPU time; less sensitive "
          f"to other processes on a shared machine)")


if __name__ == "__main__":
    main()
