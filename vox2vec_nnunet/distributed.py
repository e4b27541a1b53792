"""Several processes, on one or several machines, training the single-process model.

The contrastive loss of paper Sect. 3.3 contrasts every embedding with all other embeddings
of the iteration; split over ranks, each rank would only see its own share of negatives.
:func:`gather_with_grad` gives every rank the embeddings of all ranks while letting the
gradients flow back to the rank that produced them. (The BatchNorm statistics of the whole
batch: :mod:`vox2vec_nnunet.network.global_batchnorm`.)

Processes come from nnU-Net's ``nnUNetv2_train -num_gpus G`` (one machine; nnU-Net starts the
nccl process group) or from PyTorch's launcher ``torchrun`` (any number of machines; it sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and the trainer starts
the process group with :func:`init_process_group_from_torchrun`). The device-dependent choices
are small functions here so that the CUDA branch is tested on the CPU too.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

from vox2vec_nnunet.errors import Vox2VecError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun sets for every process it starts."""


def distributed_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (``WORLD_SIZE`` and ``LOCAL_RANK`` are set)."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def backend_for(device: torch.device) -> str:
    """The collective backend for tensors on ``device``: nccl on CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def process_device(requested: torch.device, local_rank: int) -> torch.device:
    """This process's device: GPU ``local_rank`` of its machine when CUDA is requested, else
    ``requested`` (the CPU)."""
    return torch.device("cuda", local_rank) if requested.type == "cuda" else requested


def ddp_device_ids(device: torch.device) -> list[int] | None:
    """``device_ids`` for DistributedDataParallel: the GPU's index on CUDA, None on the CPU."""
    return [device.index] if device.type == "cuda" else None


def init_process_group_from_torchrun(requested: torch.device) -> torch.device:
    """Join the process group torchrun set up (``env://``: ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) with the backend for ``requested`` (nccl for CUDA, gloo for
    the CPU) and return this process's device (GPU ``LOCAL_RANK`` on CUDA).

    Raises:
        Vox2VecError: a torchrun variable is missing or not a number.
    """
    missing = [name for name in TORCHRUN_VARIABLES if not os.environ.get(name)]
    if missing:
        raise Vox2VecError(f"started as a torchrun process (WORLD_SIZE and LOCAL_RANK are set) but "
                           f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: start the training "
                           f"with torchrun, or unset WORLD_SIZE and LOCAL_RANK for a single process")
    try:
        rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise Vox2VecError(f"torchrun variables must be integers, got RANK={os.environ['RANK']!r}, "
                           f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}, LOCAL_RANK={os.environ['LOCAL_RANK']!r}"
                           ) from None
    device = process_device(requested, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), init_method="env://", rank=rank, world_size=world_size)
    return device


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all_gather along dim 0 (ranks may hold different numbers of rows).
    Backward: all_reduce-sum the incoming gradient of the concatenation, return this rank's
    rows."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        world_size = dist.get_world_size()
        local_size = torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)
        sizes = [torch.empty_like(local_size) for _ in range(world_size)]
        dist.all_gather(sizes, local_size)
        row_counts = [int(size.item()) for size in sizes]
        max_rows = max(row_counts)
        # all_gather needs equal shapes: pad to the largest share, trim afterwards.
        padded = t.contiguous()
        if t.shape[0] < max_rows:
            padded = torch.cat([padded, t.new_zeros((max_rows - t.shape[0], *t.shape[1:]))])
        gathered = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(gathered, padded)
        rank = dist.get_rank()
        ctx.row_range = (sum(row_counts[:rank]), sum(row_counts[:rank + 1]))
        return torch.cat([part[:rows] for part, rows in zip(gathered, row_counts)])

    @staticmethod
    def backward(ctx, grad_gathered: Tensor) -> Tensor:
        grad = grad_gathered.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, stop = ctx.row_range
        return grad[start:stop]


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` from all ranks of the default process group along dim 0, in rank
    order, keeping the autograd connection to this rank's ``t``.

    Returns ``t`` itself when torch.distributed is not available or not initialised (single
    process). Ranks may hold different numbers of rows (the sizes are all-gathered first);
    the other dimensions, dtype and device must agree across ranks. Every rank must call it
    (and later backward) collectively.

    Design goal: under DistributedDataParallel, every rank computing
    ``info_nce(gather_with_grad(z1), gather_with_grad(z2))`` yields parameter gradients equal
    to the single-process gradients of the loss on the union of the ranks' batches. Each
    rank then computes the same loss L on the same gathered embeddings, but its autograd
    graph reaches only its own rows. The backward all_reduce-sums the gradient of the
    concatenation over the W ranks (W times dL/dz for this rank's rows, since every rank
    computed the same L), and DDP's average over ranks of the parameter gradients then adds
    up each rank's share exactly once: (1/W) sum_ranks W * dL/dtheta|_rank = dL/dtheta.
    (In general, with rank r computing its own loss L_r from the gathered tensor, the result
    is the gradient of the mean of the L_r; summing makes this hold, where merely scaling
    the local gradient by W would need the L_r to be identical.)
    """
    if not distributed_active():
        return t
    return _GatherWithGrad.apply(t)
