"""Gathering embeddings across processes so multi-process pre-training keeps the paper's loss.

The contrastive loss of paper Sect. 3.3 contrasts every embedding with all other embeddings
of the iteration; split over ranks, each rank would only see its own share of negatives.
:func:`gather_with_grad` gives every rank the embeddings of all ranks while letting the
gradients flow back to the rank that produced them.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _distributed_active() -> bool:
    return dist.is_available() and dist.is_initialized()


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
    if not _distributed_active():
        return t
    return _GatherWithGrad.apply(t)
