"""Where genzoo finds its Hydra configs and keeps its datasets, and where a run keeps its first stage."""

import os
from pathlib import Path

# <run dir>/first_stage/: the run directory of the first stage a two-stage run trained for itself
# (genzoo.models.first_stage); part of that run, not a run of the sweep (the report skips it).
FIRST_STAGE_FOLDER = "first_stage"


def is_first_stage_of_a_run(run_dir: Path) -> bool:
    """True when run_dir is the first stage a run trained into its own directory (<run dir>/first_stage/)."""
    run_dir = Path(run_dir)
    return run_dir.name == FIRST_STAGE_FOLDER and (run_dir.parent / "config.yaml").is_file()


def config_dir() -> Path:
    """Directory of the Hydra config groups: genzoo/conf/ inside the package (a wheel ships it as package data)."""
    return Path(__file__).resolve().parent / "conf"


def default_data_root() -> Path:
    """Dataset root when `data.root` is unset: `$GENZOO_DATA`, else the user cache.

    The user cache is `$XDG_CACHE_HOME/genzoo/data`, falling back to `~/.cache/genzoo/data`.
    """
    if os.environ.get("GENZOO_DATA"):
        return Path(os.environ["GENZOO_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "genzoo" / "data"


def default_cache_dir() -> Path:
    """Where evaluation caches live (trained classifiers, converted Inception weights,
    reference feature sets): `$GENZOO_CACHE`, else `$XDG_CACHE_HOME/genzoo/eval`, falling
    back to `~/.cache/genzoo/eval`."""
    if os.environ.get("GENZOO_CACHE"):
        return Path(os.environ["GENZOO_CACHE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "genzoo" / "eval"
