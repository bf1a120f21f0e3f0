"""Diffusion: noise schedules (pure functions) and samplers (plain functions of a net)."""

from genzoo.diffusion.samplers import (
    ancestral_sample,
    ddim_sample,
    ddim_timesteps,
    posterior_mean,
    predict_x0_eps,
    x0_bound,
)
from genzoo.diffusion.schedules import Schedule, cosine_betas, extract, linear_betas, make_schedule, q_sample

__all__ = [
    "Schedule",
    "ancestral_sample",
    "cosine_betas",
    "ddim_sample",
    "ddim_timesteps",
    "extract",
    "linear_betas",
    "make_schedule",
    "posterior_mean",
    "q_sample",
    "predict_x0_eps",
    "x0_bound",
]
