"""BatchNorm whose batch statistics span every process of a distributed run.

The paper trains on one GPU (Sect. 4.1): every BatchNorm of the FPN and the projector
normalises with the statistics of the whole iteration's batch (2n patches, 2N voxels).
Split over W processes, plain BatchNorm would normalise each share with its own statistics,
a different model. :class:`GlobalBatchNorm` computes the statistics over the union of the
ranks' batches and back-propagates through them, so W processes train the single-process
model. PyTorch's ``SyncBatchNorm`` does this on CUDA only; this module uses plain collectives,
so it runs wherever the process group does (gloo on the CPU, nccl on CUDA), which is how the
tests check it.

Statistics are combined pairwise (Chan et al.): each rank contributes its count, mean and sum
of squared deviations per channel, so the variance is not the cancellation-prone difference
``E[x^2] - E[x]^2``. Without an initialised process group, or in eval mode, it is
``torch.nn.BatchNorm*d`` (the same call).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from vox2vec_nnunet.distributed import distributed_active


def _channel_view(t: Tensor, dims: int) -> Tensor:
    """(C,) -> (1, C, 1, ...) broadcasting against an input of ``dims`` dimensions."""
    return t.view(1, -1, *([1] * (dims - 2)))


class _GlobalBatchNormFunction(torch.autograd.Function):
    """Training-mode batch normalisation with statistics over all ranks.

    Forward: per channel, local count, mean and sum of squared deviations are all-gathered and
    combined; ``y = (x - mean) * invstd * weight + bias``. Backward (the BatchNorm gradient with
    global sums): ``dx = weight * invstd * (dy - sum(dy) / N - xhat * sum(dy * xhat) / N)`` with
    the two sums all-reduced over the ranks; ``dweight``/``dbias`` are this rank's local sums
    (DistributedDataParallel averages them over the ranks like every other parameter gradient).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dtype = torch.promote_types(x.dtype, torch.float32)  # statistics at least in float32
        reduce_dims = [d for d in range(x.dim()) if d != 1]
        xc = x.to(dtype)
        count = x.numel() // x.shape[1]
        var, mean = torch.var_mean(xc, dim=reduce_dims, correction=0)
        local = torch.stack([torch.full_like(mean, count), mean, var * count])  # (3, C)
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        counts, means, squares = torch.stack(gathered).unbind(1)  # each (W, C)
        total = counts.sum(0)
        global_mean = (counts * means).sum(0) / total
        m2 = squares.sum(0) + (counts * (means - global_mean).square()).sum(0)
        global_var = m2 / total
        invstd = torch.rsqrt(global_var + eps)
        scale = invstd if weight is None else invstd * weight.to(dtype)
        shift = -global_mean * scale if bias is None else bias.to(dtype) - global_mean * scale
        y = (xc * _channel_view(scale, x.dim()) + _channel_view(shift, x.dim())).to(x.dtype)
        ctx.save_for_backward(x, weight, global_mean, invstd)
        ctx.total = total
        ctx.has_bias = bias is not None
        ctx.parameter_dtype = (weight if weight is not None else bias if bias is not None else x).dtype
        unbiased_var = m2 / (total - 1).clamp(min=1)
        ctx.mark_non_differentiable(global_mean, unbiased_var, total)
        return y, global_mean, unbiased_var, total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Tensor, *_unused: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, None]:
        x, weight, mean, invstd = ctx.saved_tensors
        dims = x.dim()
        reduce_dims = [d for d in range(dims) if d != 1]
        dtype = mean.dtype
        xhat = (x.to(dtype) - _channel_view(mean, dims)) * _channel_view(invstd, dims)
        dyc = dy.to(dtype)
        sum_dy = dyc.sum(reduce_dims)
        sum_dy_xhat = (dyc * xhat).sum(reduce_dims)
        local_sums = torch.stack([sum_dy, sum_dy_xhat])
        global_sums = local_sums.clone()
        dist.all_reduce(global_sums, op=dist.ReduceOp.SUM)
        scale = invstd if weight is None else invstd * weight.to(dtype)
        dx = (dyc - _channel_view(global_sums[0] / ctx.total, dims)
              - xhat * _channel_view(global_sums[1] / ctx.total, dims)) * _channel_view(scale, dims)
        dweight = local_sums[1].to(ctx.parameter_dtype) if ctx.needs_input_grad[1] else None
        dbias = local_sums[0].to(ctx.parameter_dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx.to(x.dtype), dweight, dbias, None


class GlobalBatchNorm(_BatchNorm):
    """``torch.nn.BatchNorm1d/2d/3d`` with the batch statistics of all ranks (see the module
    docstring). Same parameters, buffers and state-dict names as BatchNorm, so weights move
    freely between the two; any input of at least 2 dimensions (N, C, ...)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects an input (N, C, ...) of at least 2 dimensions, got "
                             f"shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and distributed_active()):
            return super().forward(input)
        self._check_input_dim(input)
        y, mean, unbiased_var, total = _GlobalBatchNormFunction.apply(input, self.weight, self.bias, self.eps)
        if int(total.min()) < 2:
            raise ValueError(f"GlobalBatchNorm: expected more than 1 value per channel over all ranks when "
                             f"training, got input shape {tuple(input.shape)} on this rank")
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), factor)
        return y


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d in ``module`` by a :class:`GlobalBatchNorm` that shares its
    parameters and buffers (an optimiser built before the conversion keeps working). Returns the
    converted module (a new object if ``module`` itself is a BatchNorm)."""
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats, device="meta")
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replacement = convert_to_global_batchnorm(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module
