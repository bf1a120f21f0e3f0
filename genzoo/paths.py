"""Where genzoo finds its Hydra configs and keeps its datasets."""

import os
from pathlib import Path


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
