"""Drawing evaluation samples across DDP ranks so rank zero scores them all.

Under Lightning DDP every rank runs the whole run; training is split by Lightning, and
the evaluation samples are split here: each rank draws its share with its own seed, the
shares are gathered, and rank zero alone scores them and writes the run directory.
Each rank leaves the process group Lightning opened before its interpreter exits.
"""

from contextlib import contextmanager

import torch

from genzoo.metrics.harness import generate


def rank_seed(seed: int, rank: int) -> int:
    """The sampling seed of one rank: `seed` on rank 0 (so one process reproduces a single-device run)."""
    return seed + 1_000_003 * rank


def generate_across_ranks(sample, n: int, batch_size: int, seed: int, strategy) -> torch.Tensor:
    """n images (n, C, H, W) in [-1, 1] on the CPU, drawn in equal shares by all ranks and gathered.

    With one process this is `generate(sample, n, batch_size, seed)`. With W ranks each
    draws ceil(n / W) images from a generator seeded with rank_seed(seed, rank); the
    shares are all-gathered (every rank must call this) and concatenated in rank order,
    then cut to n. `strategy` is the Lightning trainer's strategy (world_size, global_rank,
    root_device, all_gather).
    """
    world = strategy.world_size
    if world == 1:
        return generate(sample, n, batch_size, seed)
    share = -(-n // world)
    mine = generate(sample, share, batch_size, rank_seed(seed, strategy.global_rank))
    gathered = strategy.all_gather(mine.to(strategy.root_device))  # (world, share, C, H, W)
    return gathered.reshape(world * share, *mine.shape[1:])[:n].cpu()


def _group_is_open() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@contextmanager
def process_group_left_on_exit():
    """Destroy, on leaving, the default process group opened inside (by Lightning's DDP); leave one opened before.

    Lightning registers no exit handler for a gloo group (only for NCCL). Left open, gloo's
    worker threads are torn down with the interpreter, and a rank may abort ("terminate
    called without an active exception", SIGABRT), which Lightning's launcher reports by
    killing the other ranks. Ranks other than zero leave as soon as their share is
    gathered; rank zero after its record is written. A group the caller opened is theirs
    to close. Raises nothing of its own.
    """
    opened_before = _group_is_open()
    try:
        yield
    finally:
        if not opened_before and _group_is_open():
            torch.distributed.destroy_process_group()
