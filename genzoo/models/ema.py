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


@torch.no_grad()
def standing_statistics(net: nn.Module, draw_inputs, batches: int = 16) -> None:
    """Re-estimate `net`'s BatchNorm running statistics from its own activations ("standing statistics", Brock et al. 2019).

    An EMA copy's weights are an average over many steps, so the running statistics copied
    from the live net (update_ema) describe another net's activations. This resets each
    BatchNorm's statistics and runs `net` in train mode on `batches` inputs,
    `net(*draw_inputs(i))` for i in 0..batches-1, with momentum None, so the running mean
    and variance become the plain averages of the per-batch means and unbiased variances;
    momenta and the train/eval mode are restored after. No gradient is taken and no
    parameter changes. A net without BatchNorm is left as it is.
    Raises ValueError for batches < 1.
    """
    if batches < 1:
        raise ValueError(f"standing statistics need batches >= 1, got {batches}")
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta, was_training = [m.momentum for m in norms], net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    net.train()
    for i in range(batches):
        net(*draw_inputs(i))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.train(was_training)
