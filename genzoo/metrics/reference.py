"""On-disk cache of real-image feature sets, keyed by everything that shapes them.

A file holds the features and the key they were computed under: dataset, split (with
how it was carved), extractor, its weights checksum, resize mode and image count. The
file name spells the key out; the stored key must equal the requested one, else the
features are recomputed and the file rewritten (atomically). Nothing is reused silently:
every hit and miss is printed with its file. Runs filling the cache at once take turns
(a file lock), so each feature set is computed once; an unreadable file is recomputed.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from genzoo.artifacts import atomic_torch_save, file_lock


def reference_path(cache_dir: Path, key: dict) -> Path:
    """File of the feature set for `key` (needs dataset, split, extractor, weights_sha256, resize, n)."""
    split = key["split"].replace("(", "_").replace(")", "").replace(",", "_").replace("=", "").replace(" ", "")
    name = f"{key['dataset']}-{split}-{key['extractor']}-{key['weights_sha256'][:12]}-{key['resize']}-n{key['n']}.pt"
    return Path(cache_dir) / "reference" / name


def cached_features(cache_dir: Path, key: dict, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Features (N, D) for `key`: from the cache when its stored key matches, else `compute()` and store.

    key: a dict of str/int/float values (see reference_path). Returns float32 features on the CPU.
    """
    path = reference_path(cache_dir, key)
    with file_lock(path):
        saved = _load(path)
        if saved is not None and saved.get("key") == key:
            print(f"genzoo: reference features from cache {path}", flush=True)
            return saved["features"]
        if saved is not None:
            print(f"genzoo: reference cache {path} was computed under another key; recomputing", flush=True)
        features = compute().float().cpu()
        atomic_torch_save({"key": dict(key), "features": features}, path)
    print(f"genzoo: reference features computed and cached in {path}", flush=True)
    return features


def _load(path: Path) -> dict | None:
    """The cache file's contents, or None when it is missing or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: say so and recompute
        print(f"genzoo: reference cache {path} is unreadable ({type(err).__name__}); recomputing", flush=True)
        return None
