"""genzoo's U-Net against diffusers' UNet2DModel: training images/s at the same architecture and parameter count.

    pip install -e ".[bench-diffusers]"      # diffusers, only for this benchmark
    python benchmarks/unet_vs_diffusers.py [--batch 128] [--steps 5] [--rounds 6] [--device cpu] [--out result.json]

Both nets are built from the DDPM family's default config (genzoo/conf/model/ddpm.yaml:
base_channels 32, channel_mults [1, 2, 2], one residual block per level, self-attention at
the lowest level and in the middle, 4 heads, dropout 0.1, GroupNorm of 32 groups) on
Fashion-MNIST's 1x28x28, diffusers' as the same U-Net in its own blocks (DownBlock2D x 2,
AttnDownBlock2D; the mirror on the way up; a mid block with attention; stride-2 conv down,
nearest + conv up). A training step is the DDPM's: eps-prediction MSE at uniform t in
[0, T) of the config's schedule (genzoo's q_sample), backward, Adam. The two nets train in alternating rounds in one process (a
round: `--steps` steps of one, then of the other, after 3 untimed warm-up steps each), so a
load that comes and goes falls on both; printed: the parameter counts, the median images/s
of each over the rounds, and the ratio genzoo / diffusers (above 1: genzoo faster) as the
median of the rounds' paired ratios, with their range.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genzoo import protocol  # noqa: E402
from genzoo.config import load_config  # noqa: E402
from genzoo.diffusion.schedules import make_schedule, q_sample  # noqa: E402
from genzoo.nets.unet import UNet  # noqa: E402


def genzoo_unet(cfg) -> torch.nn.Module:
    """genzoo's U-Net of the DDPM config `cfg.model` for 1x28x28, called as net(x, t)."""
    m = cfg.model
    return UNet((1, 28, 28), m.base_channels, tuple(m.channel_mults), m.num_res_blocks, tuple(m.attention_levels), m.dropout)


class DiffusersUNet(torch.nn.Module):
    """diffusers' UNet2DModel laid out as genzoo's U-Net of the DDPM config, called as net(x, t) -> eps."""

    def __init__(self, cfg):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError as err:
            raise SystemExit('this benchmark needs diffusers: pip install -e ".[bench-diffusers]"') from err
        m = cfg.model
        levels = len(m.channel_mults)
        down = tuple("AttnDownBlock2D" if i in m.attention_levels else "DownBlock2D" for i in range(levels))
        channels = tuple(m.base_channels * k for k in m.channel_mults)
        self.net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=channels,
                               layers_per_block=m.num_res_blocks, down_block_types=down,
                               up_block_types=tuple(b.replace("Down", "Up") for b in reversed(down)),
                               attention_head_dim=channels[-1] // 4, norm_num_groups=32, dropout=m.dropout)

    def forward(self, x, t):
        return self.net(x, t).sample


def train_steps(net, optimizer, schedule, x0, steps: int) -> float:
    """Seconds for `steps` DDPM training steps (eps MSE at uniform t, backward, Adam) on the batch x0."""
    start = time.perf_counter()
    for _ in range(steps):
        t = torch.randint(0, schedule.num_steps, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        loss = torch.nn.functional.mse_loss(net(q_sample(schedule, x0, t, eps), t), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if x0.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per net per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.rounds < 1:
        parser.error(f"--batch, --steps and --rounds must be >= 1, got {args.batch}, {args.steps}, {args.rounds}")
    cfg = load_config(["model=ddpm", "data=fashion_mnist"])
    device = torch.device(args.device)
    torch.manual_seed(0)
    nets = {"genzoo": genzoo_unet(cfg).to(device), "diffusers": DiffusersUNet(cfg).to(device)}
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=cfg.model.optimizer.lr) for name, net in nets.items()}
    x0 = torch.rand(args.batch, 1, 28, 28, device=device) * 2 - 1
    schedule = make_schedule(cfg.model.schedule, cfg.model.num_steps)
    for name, net in nets.items():
        train_steps(net, optimizers[name], schedule, x0, 3)  # warm-up
    rates = {name: [] for name in nets}
    for _ in range(args.rounds):
        for name, net in nets.items():
            rates[name].append(args.batch * args.steps / train_steps(net, optimizers[name], schedule, x0, args.steps))
    import diffusers

    hw = protocol.hardware(device, "32-true")
    result = {
        "params": {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()},
        "images_per_second": {name: statistics.median(r) for name, r in rates.items()},
        "rounds_images_per_second": rates,
        "protocol": {"batch": args.batch, "steps_per_round": args.steps, "rounds": args.rounds, "warmup_steps": 3,
                     "precision": "float32", "device": hw["device"], "torch_threads": hw["torch_threads"],
                     "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__,
                     "diffusers": diffusers.__version__, "genzoo": protocol.git_commit()},
    }
    paired = [g / d for g, d in zip(rates["genzoo"], rates["diffusers"])]  # a round's two nets ran back to back
    result["ratio_genzoo_over_diffusers"] = statistics.median(paired)
    result["rounds_ratio"] = paired
    p, ips = result["params"], result["images_per_second"]
    print(f"{hw['device']} ({hw['torch_threads']} threads), batch {args.batch}, float32, median of {args.rounds} rounds of "
          f"{args.steps} steps; torch {torch.__version__}, diffusers {diffusers.__version__}")
    print(f"  genzoo UNet       {p['genzoo']:>9,} params  {ips['genzoo']:8.1f} train images/s")
    print(f"  diffusers UNet2D  {p['diffusers']:>9,} params  {ips['diffusers']:8.1f} train images/s")
    print(f"  ratio genzoo / diffusers: {result['ratio_genzoo_over_diffusers']:.2f}x (median of the rounds' paired ratios, "
          f"{min(paired):.2f}-{max(paired):.2f})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
