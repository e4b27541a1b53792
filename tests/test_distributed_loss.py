"""Two-process InfoNCE through gather_with_grad equals the single-process loss on the union.

Two gloo processes each take a share of a fixed batch, run a DistributedDataParallel model,
gather the embeddings of both ranks and back-propagate
``info_nce(gather_with_grad(z1), gather_with_grad(z2))``; the averaged parameter gradients
must equal those of one process on the full batch.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor

from vox2vec_nnunet.distributed import gather_with_grad
from vox2vec_nnunet.loss import info_nce

WORLD_SIZE = 2
BATCH = 8
# Rows of the fixed batch held by rank 0 and rank 1: an even and an uneven split.
SPLITS = {"equal": (4, 4), "unequal": (3, 5)}


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(6, 4).double()


def make_batch() -> tuple[Tensor, Tensor]:
    """The two views of BATCH positions (row i of each is a positive pair)."""
    generator = torch.Generator().manual_seed(1)
    view1 = torch.randn(BATCH, 6, generator=generator, dtype=torch.float64)
    view2 = view1 + 0.5 * torch.randn(BATCH, 6, generator=generator, dtype=torch.float64)
    return view1, view2


def embed(model: torch.nn.Module, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
    z = F.normalize(model(torch.cat([view1, view2])), dim=1)
    return z[:view1.shape[0]], z[view1.shape[0]:]


def single_process_result() -> tuple[float, list[Tensor]]:
    model = make_model()
    loss = info_nce(*embed(model, *make_batch()))
    loss.backward()
    return loss.item(), [p.grad for p in model.parameters()]


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    try:
        view1, view2 = make_batch()
        for name, split in SPLITS.items():
            start = sum(split[:rank])
            rows = slice(start, start + split[rank])
            model = torch.nn.parallel.DistributedDataParallel(make_model())
            z1, z2 = embed(model, view1[rows], view2[rows])
            loss = info_nce(gather_with_grad(z1), gather_with_grad(z2))
            loss.backward()
            torch.save({"loss": loss.item(), "grads": [p.grad for p in model.parameters()]},
                       Path(out_dir) / f"{name}_rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while the other still communicates
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_single_process(tmp_path: Path) -> None:
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    expected_loss, expected_grads = single_process_result()
    for name in SPLITS:
        for rank in range(WORLD_SIZE):
            result = torch.load(tmp_path / f"{name}_rank{rank}.pt")
            assert abs(result["loss"] - expected_loss) < 1e-10, (name, rank)
            assert len(result["grads"]) == len(expected_grads)
            for grad, expected in zip(result["grads"], expected_grads):
                error = ((grad - expected).abs().max() / expected.abs().max()).item()
                assert error < 1e-5, (name, rank, error)


def test_gather_without_process_group_is_identity() -> None:
    assert not dist.is_initialized()
    t = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(t) is t
