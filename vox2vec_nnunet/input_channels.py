"""Pre-trained weights on a dataset with another number of input channels, or another modality.

Only a network's first convolution sees the image channels (the FPN's ``first_conv``, the stem
of nnU-Net's U-Nets, which nnU-Net's U-Nets hold under several names); every other weight is
the same whatever the channels. Weights pre-trained on 1 channel fine-tune on C channels, and
the reverse, by this rule for the first convolution's kernel (its bias is kept):

* 1 -> C: every channel gets the pre-trained kernel divided by C. The C-channel network given
  the same image in every channel computes exactly what the pre-trained network computes on it,
  and z-scored channels (each of mean 0 and std 1) enter on the scale the kernel was trained on.
* C -> 1: the sum of the C kernels: the 1-channel network on an image computes what the
  C-channel network computes on that image repeated in every channel (the inverse of 1 -> C;
  the mean would scale the first layer's response by 1/C).
* C -> C' with C, C' > 1 and C != C': refused, there is no correspondence between the channels.
  Pre-train on the dataset's own channels, or on single-channel images.

nnU-Net's ``nnUNetv2_train -pretrained_weights`` requires every weight to match in name and
shape (nnU-Net issue #2252) and is a function the trainers cannot override, so the trainers
call :func:`prepare_pretrained_weights` after building the network: it checks the file
(``torch.load(weights_only=True)``), refuses what cannot be adapted with the rule above, and
otherwise lets nnU-Net's loader load the file into the network unchanged: until the next
``load_state_dict`` the network reports the checkpoint's shapes for the first convolution and
adapts the pre-trained kernel as it is loaded (``state_dict``/``load_state_dict`` hooks, removed
after that load).

Pre-training records its channel names (``checkpoint["vox2vec"]["channel_names"]``; nnU-Net's
own checkpoints hold them in ``init_args``; imported published weights are CT), so the training
log says what the weights were pre-trained on, e.g. CT weights fine-tuned on MR, which is
allowed; for older checkpoints the channels are unknown.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from vox2vec_nnunet.channels import is_ct
from vox2vec_nnunet.errors import Vox2VecError


def adapt_input_channels(kernel: torch.Tensor, channels: int) -> torch.Tensor:
    """A first convolution's kernel ``(out, C, ...)`` for ``channels`` input channels (module rule);
    ValueError when neither count is 1."""
    found = kernel.shape[1]
    if found == channels:
        return kernel
    if found == 1:
        return kernel.expand(-1, channels, *kernel.shape[2:]) / channels
    if channels == 1:
        return kernel.sum(dim=1, keepdim=True)
    raise ValueError(f"a kernel of {found} input channels cannot be adapted to {channels}")


def input_channel_changes(network: Mapping[str, torch.Tensor], checkpoint: Mapping[str, torch.Tensor],
                          input_channels: int) -> dict[str, int]:
    """The kernels of ``network`` (a state dict) that see its ``input_channels`` and whose
    ``checkpoint`` counterpart differs from them in the number of input channels alone:
    name -> the checkpoint's count."""
    changes = {}
    for name, tensor in network.items():
        found = checkpoint.get(name)
        if found is None or tensor.ndim < 3 or found.ndim != tensor.ndim or tensor.shape[1] != input_channels:
            continue
        if found.shape[1] != input_channels and found.shape[:1] + found.shape[2:] == tensor.shape[:1] + tensor.shape[2:]:
            changes[name] = int(found.shape[1])
    return changes


def checkpoint_channel_names(checkpoint: Mapping) -> dict[str, str] | None:
    """The channel names a checkpoint was trained on, or None when it does not record them."""
    record = checkpoint.get("vox2vec")
    if isinstance(record, Mapping) and isinstance(record.get("channel_names"), Mapping):
        return dict(record["channel_names"])
    init_args = checkpoint.get("init_args")
    if isinstance(init_args, Mapping) and isinstance(init_args.get("dataset_json"), Mapping):
        names = init_args["dataset_json"].get("channel_names")
        if isinstance(names, Mapping):
            return dict(names)
    return None


def _adapt_on_next_load(network: nn.Module, changes: Mapping[str, int], input_channels: int) -> None:
    """Hooks on ``network`` until its next ``load_state_dict``: ``state_dict`` reports the
    checkpoint's shapes of the ``changes`` kernels (nnU-Net's loader compares shapes with it),
    and the load adapts a kernel of the checkpoint's shape to the network's."""
    def report(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        for name, channels in changes.items():
            if prefix + name in state_dict:
                state_dict[prefix + name] = adapt_input_channels(state_dict[prefix + name].detach(), channels)

    def adapt(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        for name, channels in changes.items():
            value = state_dict.get(prefix + name)
            if value is not None and value.ndim >= 2 and value.shape[1] == channels:
                state_dict[prefix + name] = adapt_input_channels(value, input_channels)

    def remove(module: nn.Module, incompatible_keys) -> None:
        for handle in handles:
            handle.remove()

    handles = [network.register_state_dict_post_hook(report), network.register_load_state_dict_pre_hook(adapt),
               network.register_load_state_dict_post_hook(remove)]


def prepare_pretrained_weights(network: nn.Module, checkpoint: Mapping, state: Mapping[str, torch.Tensor],
                               path: str | Path, dataset_channels: Mapping[str, str]) -> tuple[dict, str]:
    """Get ``network`` (unwrapped, built for ``dataset_channels``) ready for nnU-Net to load the
    ``-pretrained_weights`` file ``path`` (its ``checkpoint`` and network weights ``state``).

    Returns the weights as they will be loaded (first convolutions adapted) and the line for the
    training log. Raises :class:`Vox2VecError` with the rule when the channel counts cannot be
    adapted.
    """
    input_channels = len(dataset_channels)
    changes = input_channel_changes(network.state_dict(), state, input_channels)
    counts = sorted(set(changes.values()))
    pretrained = checkpoint_channel_names(checkpoint)
    described = f"{pretrained}" if pretrained is not None else "unknown channels (the checkpoint records none)"
    if counts and (len(counts) > 1 or min(counts[0], input_channels) != 1):
        raise Vox2VecError(
            f"{path}: its first convolution takes {' or '.join(map(str, counts))} input channels ({described}), this "
            f"dataset has {input_channels} {dict(dataset_channels)}. Weights adapt between 1 and C channels only "
            f"(1 -> C: the kernel / C for every channel; C -> 1: the sum of the kernels): pre-train on this dataset's "
            f"channels, or on single-channel images")
    if changes:
        _adapt_on_next_load(network, dict(changes), input_channels)
    adapted = {k: adapt_input_channels(v, input_channels) if k in changes else v for k, v in state.items()}
    line = f"vox2vec: -pretrained_weights {path} were pre-trained on {described}; this dataset has {dict(dataset_channels)}"
    if changes:
        found = counts[0]
        rule = f"every channel's kernel = the pre-trained kernel / {input_channels}" if found == 1 else \
            "its kernel = the sum of the pre-trained kernels"
        line += f"; first convolution adapted from {found} to {input_channels} input channel(s) ({rule})"
    if pretrained is not None:
        was_ct = [is_ct(n) for n in pretrained.values()]
        now_ct = [is_ct(n) for n in dataset_channels.values()]
        if any(was_ct) and not any(now_ct):
            line += ". NOTE: the weights were pre-trained on CT, this dataset is not CT"
        elif any(now_ct) and not any(was_ct):
            line += ". NOTE: the weights were not pre-trained on CT, this dataset is CT"
    return adapted, line
