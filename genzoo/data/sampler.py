"""The training order: a seeded permutation per epoch that a resumed run can re-enter mid-epoch.

torch's RandomSampler draws each epoch's order from the global RNG, so a run resumed from
a checkpoint saved mid-epoch cannot redraw the order it was in. Here the order of epoch e
is a pure function of (seed, e), and a resumed run starts the sampler at its epoch with
the already-trained samples skipped.
"""

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices 0..n-1 in the order torch.randperm(n) draws from a generator seeded with (seed, epoch).

    Args:
        n: dataset size (> 0).
        seed: the run's seed.
        epoch: the epoch whose order comes first (Lightning calls `set_epoch` before each epoch).
        skip: indices of that first pass to leave out: batches_done * batch_size when resuming
            a run saved after batches_done batches of `epoch` (drop_last batching keeps batches whole).
        flip: iterate (index, flip) pairs, flip from `flips()` (random horizontal flips).
    Raises ValueError for n <= 0, a negative epoch or skip, or skip > n.
    """

    def __init__(self, n: int, seed: int, epoch: int = 0, skip: int = 0, flip: bool = False):
        if n <= 0 or epoch < 0 or not 0 <= skip <= n:
            raise ValueError(f"EpochSampler needs n > 0, epoch >= 0 and 0 <= skip <= n, got n={n}, epoch={epoch}, skip={skip}")
        self.n, self.seed, self.epoch, self._skip, self.flip = n, seed, epoch, skip, flip

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch; the skip applies only to the epoch it was set for."""
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """The full permutation (n,) of one epoch."""
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))

    def indices(self) -> torch.Tensor:
        """This epoch's order as an int64 tensor, the resume skip left out (and consumed, as by iteration)."""
        skip, self._skip = self._skip, 0
        return self.order(self.epoch)[skip:]

    def flips(self) -> torch.Tensor:
        """(n,) bool: which of the n images this epoch mirrors (probability 1/2 each, seeded by (seed, epoch))."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 500_000)
        return torch.rand(self.n, generator=generator) < 0.5

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, bool]]:
        indices = self.indices()
        if self.flip:
            yield from zip(indices.tolist(), self.flips()[indices].tolist())
        else:
            yield from indices.tolist()

    def __len__(self) -> int:
        # the whole epoch, skipped part included: Lightning sizes the epoch from len() and counts
        # the batches done before the checkpoint itself
        return self.n
