"""Command line: `python -m genzoo key=value ...` (and the `genzoo` console script).

Hydra parses the overrides and makes the run directory; `run(cfg)` does the work. Input
errors print one line and exit with status 2; HYDRA_FULL_ERROR=1 shows the traceback.
"""

import sys

import hydra
from omegaconf import DictConfig

from genzoo.config import check_group_choices
from genzoo.errors import GenzooError, exit_with_error
from genzoo.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _task(cfg: DictConfig) -> None:
    from genzoo.runner import run

    try:
        payload = run(cfg)
    except GenzooError as err:
        exit_with_error(err)
    if payload is None:  # a DDP rank other than zero: rank zero reports
        return
    detail = f"diverged at {payload['divergence']}" if payload["status"] == "diverged" else f"metrics {payload['metrics']}"
    print(f"genzoo: {payload['model']} on {payload['data']}: {payload['status']}; {detail}")


def main() -> None:
    """Entry point of `genzoo` and `python -m genzoo`."""
    try:
        check_group_choices(a for a in sys.argv[1:] if not a.startswith("-"))
    except GenzooError as err:
        exit_with_error(err)
    _task()
