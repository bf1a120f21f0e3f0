"""Training: the run in phases (runner), its callbacks, exact resume, DDP helpers, tracking and the run record."""
