"""The blockwise InfoNCE (paper Sect. 3.3) against an independent dense formulation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import vox2vec_nnunet.loss as loss_module
from vox2vec_nnunet.loss import info_nce, pair_cosine_similarities


def dense_info_nce(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """Reference: the full 2N x 2N logits, self-similarity masked, cross-entropy to the
    counterpart in the other patch."""
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    logits = z @ z.T / temperature
    mask = torch.eye(2 * n, dtype=torch.bool)
    logits = logits.masked_fill(mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, targets)


def normalised_pairs(n: int, dim: int, seed: int, dtype: torch.dtype = torch.float64
                     ) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, dim, generator=generator, dtype=dtype)
    z2 = z1 + torch.randn(n, dim, generator=generator, dtype=dtype)
    return (F.normalize(z1, dim=1).requires_grad_(), F.normalize(z2, dim=1).requires_grad_())


def value_and_grads(loss_fn, z1: Tensor, z2: Tensor, temperature: float
                    ) -> tuple[Tensor, Tensor, Tensor]:
    loss = loss_fn(z1, z2, temperature)
    grad1, grad2 = torch.autograd.grad(loss, (z1, z2))
    return loss.detach(), grad1, grad2


def assert_relative_close(actual: Tensor, expected: Tensor, tolerance: float = 1e-5) -> None:
    error = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert error < tolerance, f"relative error {error:.3e}"


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 64 entries, so that small inputs span several blocks and a partial last one."""
    monkeypatch.setattr(loss_module, "_BLOCK_ELEMENTS", 64)


# With 64-entry blocks: N=2 is one block of 4 rows; N=7 blocks of 4 rows and a partial one
# of 2; N=16 sixteen blocks of 2 rows; N=37 and N=50 one row per block.
@pytest.mark.parametrize("n, dim, temperature", [(2, 3, 0.1), (7, 5, 0.1), (16, 8, 0.1),
                                                 (37, 16, 0.07), (50, 4, 0.5)])
def test_matches_dense_across_blocks(small_blocks: None, n: int, dim: int, temperature: float
                                     ) -> None:
    z1, z2 = normalised_pairs(n, dim, seed=n)
    blockwise = value_and_grads(info_nce, z1, z2, temperature)
    dense = value_and_grads(dense_info_nce, z1, z2, temperature)
    assert blockwise[0].item() == pytest.approx(dense[0].item(), rel=1e-5)
    for actual, expected in zip(blockwise[1:], dense[1:]):
        assert_relative_close(actual, expected)


def test_matches_dense_with_default_blocks() -> None:
    # 2N = 1,200 rows: 6,990 rows per default block, i.e. the single-block path.
    z1, z2 = normalised_pairs(600, 32, seed=3)
    blockwise = value_and_grads(info_nce, z1, z2, 0.1)
    dense = value_and_grads(dense_info_nce, z1, z2, 0.1)
    for actual, expected in zip(blockwise, dense):
        assert_relative_close(actual, expected)


def test_rows_not_divisible_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2N = 2,002 rows in blocks of 2**14 // 2002 = 8 rows: 250 full blocks and one of 2.
    monkeypatch.setattr(loss_module, "_BLOCK_ELEMENTS", 2 ** 14)
    z1, z2 = normalised_pairs(1001, 16, seed=4)
    assert (2 * 1001) % loss_module._rows_per_block(2 * 1001) != 0
    blockwise = value_and_grads(info_nce, z1, z2, 0.2)
    dense = value_and_grads(dense_info_nce, z1, z2, 0.2)
    for actual, expected in zip(blockwise, dense):
        assert_relative_close(actual, expected)


def test_upstream_gradient_is_applied() -> None:
    z1, z2 = normalised_pairs(9, 6, seed=5)
    (grad_blockwise,) = torch.autograd.grad(3.5 * info_nce(z1, z2), (z1,))
    (grad_dense,) = torch.autograd.grad(3.5 * dense_info_nce(z1, z2, 0.1), (z1,))
    assert_relative_close(grad_blockwise, grad_dense)


def test_single_pair_has_no_negatives() -> None:
    """N = 1: the positive is the only other embedding, so the loss is -log(1) = 0 and the
    gradients vanish."""
    z1, z2 = normalised_pairs(1, 8, seed=6)
    loss, grad1, grad2 = value_and_grads(info_nce, z1, z2, 0.1)
    assert loss.item() == 0.0
    assert torch.equal(grad1, torch.zeros_like(grad1))
    assert torch.equal(grad2, torch.zeros_like(grad2))
    assert dense_info_nce(z1, z2, 0.1).item() == pytest.approx(0.0, abs=1e-12)


def test_float32_and_half_inputs() -> None:
    z1, z2 = normalised_pairs(40, 16, seed=7)
    reference = value_and_grads(dense_info_nce, z1, z2, 0.1)
    for dtype, tolerance in [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)]:
        low1 = z1.detach().to(dtype).requires_grad_()
        low2 = z2.detach().to(dtype).requires_grad_()
        loss, grad1, grad2 = value_and_grads(info_nce, low1, low2, 0.1)
        assert loss.dtype == grad1.dtype == grad2.dtype == dtype
        assert_relative_close(loss.double(), reference[0], tolerance)
        assert_relative_close(grad1.double(), reference[1], tolerance)


def test_loss_falls_when_overfitting_one_batch() -> None:
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(64, 16)  # one "voxel representation" per position
    projector = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 8))
    optimizer = torch.optim.Adam([*embedding.parameters(), *projector.parameters()], lr=1e-2)
    positions = torch.arange(64)
    noise = 0.3 * torch.randn(2, 64, 16)  # the two "views" of each position
    losses = []
    for _ in range(40):
        features = embedding(positions)
        z1 = F.normalize(projector(features + noise[0]), dim=1)
        z2 = F.normalize(projector(features + noise[1]), dim=1)
        loss = info_nce(z1, z2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    positive, negative = pair_cosine_similarities(z1, z2)
    assert positive > 0.8 and negative < 0.2


def test_pair_cosine_similarities_match_dense() -> None:
    generator = torch.Generator().manual_seed(8)
    z1 = torch.randn(13, 6, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(13, 6, generator=generator, dtype=torch.float64)
    positive, negative = pair_cosine_similarities(z1, z2)  # unnormalised: cosine is computed

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T
    n = z1.shape[0]
    is_positive = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    is_positive[torch.arange(n), torch.arange(n, 2 * n)] = True
    is_positive[torch.arange(n, 2 * n), torch.arange(n)] = True
    is_negative = ~is_positive & ~torch.eye(2 * n, dtype=torch.bool)
    assert positive.item() == pytest.approx(similarity[is_positive].mean().item(), rel=1e-12)
    assert negative.item() == pytest.approx(similarity[is_negative].mean().item(), rel=1e-12)
    assert is_negative.sum().item() == 2 * n * (2 * n - 2)


def test_pair_cosine_similarities_single_pair() -> None:
    z1, z2 = normalised_pairs(1, 4, seed=9)
    positive, negative = pair_cosine_similarities(z1, z2)
    assert positive.item() == pytest.approx(F.cosine_similarity(z1, z2).item())
    assert math.isnan(negative.item())
    assert not positive.requires_grad


@pytest.mark.parametrize("function", [info_nce, pair_cosine_similarities])
@pytest.mark.parametrize("shapes, message", [
    (((4, 8), (5, 8)), "same shape"),
    (((4, 8), (4, 7)), "same shape"),
    (((8,), (8,)), "2-D"),
    (((2, 4, 8), (2, 4, 8)), "2-D"),
    (((0, 8), (0, 8)), "at least one pair"),
])
def test_bad_shapes_raise(function, shapes: tuple[tuple[int, ...], tuple[int, ...]],
                          message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


def test_bad_dtype_and_temperature_raise() -> None:
    with pytest.raises(ValueError, match="floating point"):
        info_nce(torch.ones(3, 2, dtype=torch.int64), torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="share dtype"):
        info_nce(torch.randn(3, 2), torch.randn(3, 2, dtype=torch.float64))
    for temperature in (0.0, -0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="temperature"):
            info_nce(torch.randn(3, 2), torch.randn(3, 2), temperature)
