"""The vox2vec contrastive objective (paper Sect. 3.3; docs/method.md, "Projector and loss").

For N positive pairs of projected voxel embeddings ``z1[i] <-> z2[i]`` (rows L2-normalised
by the projector) the 2N embeddings are stacked into ``Z`` and every one of them is scored
against all others::

    L_i^k = -log( e^{<z_i^1, z_i^2>/tau}
                  / ( e^{<z_i^1, z_i^2>/tau} + sum_{j != i} sum_l e^{<z_i^k, z_j^l>/tau} ) )

averaged over the 2N terms: the positive of an embedding is its counterpart in the other
patch, the negatives are the other 2N - 2 embeddings, self-similarity is excluded.

Why a blockwise implementation: the paper trains with N = n * m = 10 * 1000 pairs per
iteration (10 * 1024 = 10,240 with the reference's m), so the dense formulation materialises a
2N x 2N = 20,480 x 20,480 logit matrix, about 1.7 GB in float32 before autograd keeps its
softmax and gradients (over 5 GB peak on CPU). :func:`info_nce` computes the same value and
gradients from row blocks of that matrix: the forward keeps only the log-sum-exp of every
row (O(N) statistics), the backward recomputes each block, so the working memory is one or
two blocks of at most ``_BLOCK_ELEMENTS`` entries whatever N is.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

# Entries of one (rows x 2N) block of the logit matrix; 2**23 float32 entries = 32 MiB.
# The backward holds two such blocks. Rows per block = max(1, _BLOCK_ELEMENTS // 2N),
# i.e. 409 rows at N = 10,240 (large enough for efficient matrix products).
_BLOCK_ELEMENTS = 2 ** 23


def _check_pair_embeddings(z1: Tensor, z2: Tensor) -> None:
    """Raise ValueError unless ``z1`` and ``z2`` are matching non-empty (N, d) float tensors."""
    if not isinstance(z1, Tensor) or not isinstance(z2, Tensor):
        raise ValueError(f"info_nce: z1 and z2 must be tensors, got {type(z1).__name__} "
                         f"and {type(z2).__name__}")
    if z1.dim() != 2 or z2.dim() != 2:
        raise ValueError(f"info_nce: z1 and z2 must be 2-D (N, d) embedding matrices, got "
                         f"shapes {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape != z2.shape:
        raise ValueError(f"info_nce: z1 and z2 must have the same shape (row i of each is a "
                         f"positive pair), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] == 0 or z1.shape[1] == 0:
        raise ValueError(f"info_nce: z1 and z2 must hold at least one pair of non-empty "
                         f"embeddings, got shape {tuple(z1.shape)}")
    if not (z1.is_floating_point() and z2.is_floating_point()):
        raise ValueError(f"info_nce: z1 and z2 must be floating point, got {z1.dtype} and "
                         f"{z2.dtype}")
    if z1.dtype != z2.dtype or z1.device != z2.device:
        raise ValueError(f"info_nce: z1 and z2 must share dtype and device, got "
                         f"{z1.dtype} on {z1.device} and {z2.dtype} on {z2.device}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are processed in float32 (exp-sums over 2N terms overflow or
    lose all precision in float16/bfloat16); float32 and float64 are kept."""
    return torch.promote_types(dtype, torch.float32)


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast where the device has it, so the blocks stay in the compute dtype."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _rows_per_block(num_embeddings: int) -> int:
    return max(1, _BLOCK_ELEMENTS // num_embeddings)


def _logit_block(z: Tensor, z_scaled: Tensor, start: int, out: Tensor) -> Tensor:
    """Fill ``out`` (b x 2N) with logits ``z[start:start+b] @ z.T / tau`` and mask the
    self-similarities (row r, column r) with -inf."""
    torch.mm(z[start:start + out.shape[0]], z_scaled.T, out=out)
    out.diagonal(offset=start).fill_(-math.inf)
    return out


class _BlockwiseInfoNCE(torch.autograd.Function):
    """InfoNCE over the stacked embeddings ``z`` (2N x d) without the 2N x 2N matrix.

    With S = z z^T / tau (diagonal excluded), lse_r = logsumexp_{c != r} S[r, c] and p(r)
    the positive of row r (r + N mod 2N), the loss is mean_r (lse_r - S[r, p(r)]).
    Its gradient is dL/dz = (G + G^T) z / (2N tau) with G[r, c] = softmax_r(S)[c] - [c = p(r)]:
    S enters through both its row and its column index. Because S is symmetric, row r of
    G^T is exp(S[r, :] - lse) - [onehot p(r)], so each row block of (G + G^T) is built from the
    recomputed row block of S and the saved lse alone, and one product with z gives the
    gradient rows of that block directly (two 2N x 2N x d products in total, as the dense
    backward, plus one in the forward). Numerically stable: the forward shifts each row by
    its maximum, and in the backward every exponent S[r, c] - lse_r or S[r, c] - lse_c is
    <= 0. The block buffers are allocated once per call and reused.
    """

    @staticmethod
    def forward(ctx, z: Tensor, temperature: float) -> Tensor:
        num_embeddings = z.shape[0]
        num_pairs = num_embeddings // 2
        rows = _rows_per_block(num_embeddings)
        with _without_autocast(z.device):
            z_scaled = z / temperature
            block = z.new_empty((min(rows, num_embeddings), num_embeddings))
            lse = z.new_empty(num_embeddings)
            for start in range(0, num_embeddings, rows):
                logits = _logit_block(z, z_scaled, start, block[:num_embeddings - start])
                row_max = logits.amax(dim=1, keepdim=True)
                row_sum = logits.sub_(row_max).exp_().sum(dim=1)
                torch.add(row_sum.log_(), row_max.squeeze(1),
                          out=lse[start:start + logits.shape[0]])
            positive = (z[:num_pairs] * z_scaled[num_pairs:]).sum(dim=1)
            loss = lse.mean() - positive.mean()
        ctx.save_for_backward(z, lse)
        ctx.temperature = temperature
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, None]:
        z, lse = ctx.saved_tensors
        temperature = ctx.temperature
        num_embeddings = z.shape[0]
        num_pairs = num_embeddings // 2
        rows = _rows_per_block(num_embeddings)
        with _without_autocast(z.device):
            z_scaled = z / temperature
            block = z.new_empty((min(rows, num_embeddings), num_embeddings))
            transposed = torch.empty_like(block)
            grad_z = torch.empty_like(z)
            for start in range(0, num_embeddings, rows):
                logits = _logit_block(z, z_scaled, start, block[:num_embeddings - start])
                size = logits.shape[0]
                # Row block of G^T: softmax of the other rows evaluated at this block's rows.
                column_softmax = torch.sub(logits, lse, out=transposed[:size]).exp_()
                weights = logits.sub_(lse[start:start + size, None]).exp_().add_(column_softmax)
                row_index = torch.arange(size, device=z.device)
                positive_index = (row_index + start + num_pairs) % num_embeddings
                weights[row_index, positive_index] -= 2.0
                torch.mm(weights, z, out=grad_z[start:start + size])
            grad_z.mul_(grad_loss / (num_embeddings * temperature))
        return grad_z, None


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric InfoNCE of paper Sect. 3.3 over N positive pairs, as a scalar tensor.

    Args:
        z1, z2: (N, d) L2-normalised embeddings; row i of ``z1`` and row i of ``z2`` are the
            same voxel seen in the two patches (a positive pair).
        temperature: tau of the paper (0.1).

    Returns the mean of L_i^k over the 2N embeddings (see the module docstring): positives
    are the counterparts, negatives the other 2N - 2 embeddings, self-similarity excluded.
    The value and the gradients with respect to ``z1`` and ``z2`` equal those of the dense
    2N x 2N cross-entropy formulation, but memory is O(N d) plus fixed-size blocks
    (``_BlockwiseInfoNCE``). Half-precision inputs are computed in float32; the loss and the
    gradients are returned in the input dtype. Double backward is not supported (it raises).

    With a single pair (N = 1) there are no negatives and the loss is exactly 0, with zero
    gradients.

    Raises:
        ValueError: ``z1``/``z2`` are not matching non-empty 2-D floating-point tensors on one
            device, or ``temperature`` is not a positive finite number.
    """
    _check_pair_embeddings(z1, z2)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"info_nce: temperature must be a positive finite number, got "
                         f"{temperature!r}")
    z = torch.cat([z1, z2]).to(_compute_dtype(z1.dtype))
    return _BlockwiseInfoNCE.apply(z, float(temperature)).to(z1.dtype)


@torch.no_grad()
def pair_cosine_similarities(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cosine similarity of the positive pairs and of the negative pairs (monitoring).

    The negatives are all pairs of distinct embeddings among the 2N that are not a positive
    pair, as in the loss (Sect. 3.3). Their sum follows from the sum-of-vectors identity
    ``sum_{r != c} <u_r, u_c> = |sum_r u_r|^2 - sum_r |u_r|^2`` over the unit vectors u, so
    the cost is O(N d) and no 2N x 2N matrix is built. Inputs are normalised here, so
    the result is a cosine even for unnormalised rows. A rising negative similarity
    towards the positive one is the signature of representation collapse.

    Returns two 0-d tensors (positive mean, negative mean), without gradient; the negative
    mean is NaN when N = 1 (there are no negative pairs).

    Raises:
        ValueError: as :func:`info_nce` for malformed inputs.
    """
    _check_pair_embeddings(z1, z2)
    dtype = _compute_dtype(z1.dtype)
    u1 = torch.nn.functional.normalize(z1.to(dtype), dim=1)
    u2 = torch.nn.functional.normalize(z2.to(dtype), dim=1)
    num_embeddings = 2 * u1.shape[0]
    positive_sum = (u1 * u2).sum()
    total = u1.sum(dim=0) + u2.sum(dim=0)
    squared_norms = u1.square().sum() + u2.square().sum()
    # Ordered pairs r != c: everything minus self-pairs minus both orders of each positive.
    negative_sum = total.square().sum() - squared_norms - 2 * positive_sum
    num_negatives = num_embeddings * (num_embeddings - 2)
    negative_mean = (negative_sum / num_negatives if num_negatives > 0
                     else torch.full_like(positive_sum, math.nan))
    return positive_sum / (num_embeddings // 2), negative_mean
