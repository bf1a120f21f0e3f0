"""User-facing errors: each message is one line saying what was wrong and how to fix it.

The CLI prints these without a traceback (set HYDRA_FULL_ERROR=1 to see one); any other
exception is a bug and keeps its traceback.
"""


import os
import sys


class GenzooError(Exception):
    """Base class of the errors caused by input (config, data, files), not by a bug."""

    exit_code = 2


class Interrupted(GenzooError):
    """Training stopped on SIGTERM or SIGINT; a checkpoint was saved and the message says how to resume."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a process ended by it


class TrainingFailed(GenzooError):
    """The run trained no step (or otherwise produced nothing to score); metrics.json says status "failed" and why."""

    exit_code = 1


class ConfigError(GenzooError, ValueError):
    """A config value or group option is invalid; the message names the key and the fix."""


class DatasetNotFoundError(GenzooError, FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message lists paths and fixes."""


def exit_with_error(err: Exception):
    """Print `err` as one line "genzoo: error: ..." on stderr and exit with its exit_code (2 for input errors).

    With HYDRA_FULL_ERROR=1 the exception is raised instead, traceback and all.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"genzoo: error: {err}", file=sys.stderr)
    sys.exit(getattr(err, "exit_code", 2))
