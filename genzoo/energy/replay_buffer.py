"""The replay buffer of persistent contrastive divergence: chains that carry on across training steps.

Du & Mordatch (2019) start most of each step's Langevin chains where earlier steps' chains
ended, and a few from fresh noise, so short chains add up to long ones without costing more
per step (Tieleman 2008's persistent chains, with re-initialisation). Grathwohl et al. (2020)
use the same: 10,000 images, 5% re-initialised.
"""

import torch
from torch import nn


def uniform_images(n: int, image_shape, generator: torch.Generator | None = None) -> torch.Tensor:
    """n images (n, C, H, W) uniform on [-1, 1], float32 on the CPU: where fresh chains start."""
    return torch.rand((n, *image_shape), generator=generator) * 2 - 1


class ReplayBuffer(nn.Module):
    """`size` past chain ends (size, C, H, W) in [-1, 1], first uniform noise; kept in checkpoints.

    Args:
        size: images held (> 0).
        image_shape: (C, H, W).
        reinit_prob: the share of drawn chains that start from fresh uniform noise instead, in [0, 1].
    Raises:
        ValueError: size < 1 or reinit_prob outside [0, 1].
    """

    def __init__(self, size: int, image_shape, reinit_prob: float = 0.05):
        super().__init__()
        if size < 1 or not 0 <= reinit_prob <= 1:
            raise ValueError(f"a replay buffer needs size >= 1 and reinit_prob in [0, 1], got {size} and {reinit_prob}")
        self.image_shape, self.reinit_prob = tuple(image_shape), reinit_prob
        self.register_buffer("images", uniform_images(size, image_shape))

    def __len__(self) -> int:
        return len(self.images)

    def draw(self, n: int, generator: torch.Generator | None = None, reinit_prob: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting points of n chains and the slots they came from.

        Each chain starts from a uniformly chosen stored image, or with probability
        `reinit_prob` (default the buffer's) from fresh uniform noise. Returns (x (n, C, H, W)
        on the buffer's device, slots (n,) int64: where `push` puts the chains' ends).
        """
        p = self.reinit_prob if reinit_prob is None else reinit_prob
        slots = torch.randint(len(self.images), (n,), generator=generator)
        fresh = (torch.rand(n, generator=generator) < p).view(-1, *[1] * len(self.image_shape))
        noise = uniform_images(n, self.image_shape, generator)
        device = self.images.device
        return torch.where(fresh.to(device), noise.to(device), self.images[slots.to(device)]), slots

    @torch.no_grad()
    def push(self, slots: torch.Tensor, x: torch.Tensor) -> None:
        """Store chain ends x (n, C, H, W) in `slots` (n,) (as `draw` returned them)."""
        self.images[slots.to(self.images.device)] = x.detach().to(self.images.dtype)
