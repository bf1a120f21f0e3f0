"""Energy-based models' machinery: Langevin dynamics, the replay buffer and annealed importance sampling.

Functions of an energy function E: (B, *shape) -> (B,), a shape and a CPU generator, as
genzoo.diffusion's samplers are of a net and a schedule: they know no Lightning and no family.
"""
