"""GlobalBatchNorm: two gloo processes, each holding a share of a batch, compute the values,
input gradients, parameter gradients (summed over the ranks) and running statistics of
torch's BatchNorm on the whole batch in one process (float64); without a process group it
is BatchNorm."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from vox2vec_nnunet.network.global_batchnorm import GlobalBatchNorm, convert_to_global_batchnorm

WORLD_SIZE = 2
# name: (BatchNorm class, batch shape, rows of rank 0 and rank 1, channels-last input)
CASES = {
    "3d": (nn.BatchNorm3d, (4, 3, 5, 4, 6), (1, 3), False),
    "3d_channels_last": (nn.BatchNorm3d, (4, 3, 5, 4, 6), (2, 2), True),
    "1d": (nn.BatchNorm1d, (16, 5), (5, 11), False),
}


def make_case(name: str) -> tuple[nn.Module, Tensor, Tensor]:
    """A BatchNorm with non-trivial affine parameters and statistics, a batch of inputs with
    channel offsets, and the weights of the loss ``sum(sin(y) * w)``."""
    cls, shape, _, channels_last = CASES[name]
    generator = torch.Generator().manual_seed(len(name))
    norm = cls(shape[1]).double()
    with torch.no_grad():
        norm.weight.copy_(1 + torch.rand(shape[1], generator=generator, dtype=torch.float64))
        norm.bias.copy_(torch.randn(shape[1], generator=generator, dtype=torch.float64))
        norm.running_var.fill_(2.0)
    offsets = 100 * torch.randn(shape[1], generator=generator, dtype=torch.float64)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 3 + offsets.view(1, -1, *[1] * (len(shape) - 2))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return norm, x, torch.randn(shape, generator=generator, dtype=torch.float64)


def run(model: nn.Module, x: Tensor, w: Tensor) -> dict[str, Tensor]:
    """Forward and backward of ``sum(sin(model(x)) * w)``; ``model`` is or ends with the BatchNorm."""
    norm = model[-1] if isinstance(model, nn.Sequential) else model
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y.sin() * w).sum().backward()
    return {"y": y.detach(), "dx": x.grad, "dweight": norm.weight.grad, "dbias": norm.bias.grad,
            "running_mean": norm.running_mean.clone(), "running_var": norm.running_var.clone(),
            "num_batches_tracked": norm.num_batches_tracked.clone()}


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE,
                            timeout=datetime.timedelta(seconds=60))
    try:
        for name, (_, _, split, _) in CASES.items():
            norm, x, w = make_case(name)
            norm = convert_to_global_batchnorm(norm)
            rows = slice(sum(split[:rank]), sum(split[:rank + 1]))
            result = run(norm, x[rows], w[rows])
            for key in ("dweight", "dbias"):  # what DDP's average times W gives
                dist.all_reduce(result[key])
            torch.save(result, Path(out_dir) / f"{name}_rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    for name, (_, _, split, _) in CASES.items():
        expected = run(*make_case(name))
        for rank in range(WORLD_SIZE):
            result = torch.load(tmp_path / f"{name}_rank{rank}.pt")
            rows = slice(sum(split[:rank]), sum(split[:rank + 1]))
            for key in ("y", "dx"):
                torch.testing.assert_close(result[key], expected[key][rows], rtol=1e-12, atol=1e-12, msg=(name, key))
            for key in ("dweight", "dbias", "running_mean", "running_var", "num_batches_tracked"):
                torch.testing.assert_close(result[key], expected[key], rtol=1e-12, atol=1e-12, msg=(name, key))


def test_without_a_process_group_it_is_batchnorm() -> None:
    norm, x, w = make_case("3d")
    model = nn.Sequential(nn.Conv3d(3, 3, 1).double(), norm)
    parameters = list(model.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_to_global_batchnorm(model)
    assert converted is model and isinstance(model[1], GlobalBatchNorm)
    assert all(a is b for a, b in zip(parameters, model.parameters()))  # an optimiser keeps working
    assert list(model.state_dict()) == list(state)
    reference = nn.Sequential(nn.Conv3d(3, 3, 1).double(), nn.BatchNorm3d(3).double())
    reference.load_state_dict(state)
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(reference, mode)()
        assert all(torch.equal(a, b) for a, b in zip(run(model, x, w).values(), run(reference, x, w).values()))


def test_an_input_without_channels_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        GlobalBatchNorm(3)(torch.zeros(3))
