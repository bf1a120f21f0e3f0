"""Exponential moving average of a net's weights, through torch's AveragedModel."""

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_copy(net: nn.Module, decay: float) -> AveragedModel:
    """An AveragedModel of `net` whose update uses decay min(decay, (1 + n) / (10 + n)).

    n counts the updates so far; the warm-up (as in Tan & Le's and many DDPM codebases)
    lets the average track the net early in training instead of sitting near its
    initialisation for ~1 / (1 - decay) steps. Update it with `update_ema`, which also
    copies buffers (BatchNorm running statistics) rather than averaging them.
    Raises ValueError unless 0 <= decay < 1.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")

    @torch.no_grad()
    def update(averaged, current, num_averaged):
        d = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged)))
        torch._foreach_lerp_(averaged, current, 1 - d)

    ema = AveragedModel(net, multi_avg_fn=update, use_buffers=False)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: AveragedModel, net: nn.Module) -> None:
    """One step of the average of `net`'s parameters; its buffers are copied as they are."""
    ema.update_parameters(net)
    for averaged, current in zip(ema.module.buffers(), net.buffers()):
        averaged.copy_(current)
