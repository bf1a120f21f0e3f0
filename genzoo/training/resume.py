"""Exact resume and clean interruption: what a checkpoint holds beyond Lightning's own state.

Lightning's checkpoints hold the weights (EMA copies included: they are submodules), every
optimiser and LR scheduler, the precision plugin's scaler, the loops' counters and the
callbacks' states. `ResumeState` adds the rest a bit-identical continuation needs: the
Python, NumPy, torch and CUDA RNG states, the position in the epoch (for the data
module's EpochSampler) and which family and dataset wrote the checkpoint. `read_checkpoint`
checks a checkpoint before any training starts, so a truncated file or one of another
family fails with one line. `AtomicCheckpointIO` writes every checkpoint to a temporary
file and renames it, so a full disk or a kill mid-write never leaves a partial last.ckpt.
"""

import contextlib
import random
import shlex
import signal
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO

from genzoo.artifacts import atomic_torch_save
from genzoo.errors import ConfigError, GenzooError
from genzoo.training.callbacks import batches_done

KEY = "genzoo"  # the checkpoint entry ResumeState writes


def rng_states() -> dict:
    """The Python, NumPy, torch CPU and CUDA generator states, as tensors and plain types (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    """Restore what rng_states returned."""
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeState(L.Callback):
    """Writes checkpoint["genzoo"]: family, dataset, image shape, position in the epoch, RNG states and the run's resumes.

    On resume (Lightning calls on_load_checkpoint), the RNG states are put back at the first
    training batch (or at the end of training, when none was left), after whatever the
    restart itself drew (the sanity-check validation), so training and testing continue
    with the draws the uninterrupted run would have made.

    resumes: every start that continued this run, oldest first, {"at_step": global step
    resumed from, "changed": {key: [before, now]}} (genzoo.training.rundir.check_identity),
    kept in each later checkpoint. A learning rate changed by the latest resume
    ("model.optimizer.lr") is applied when training starts, after Lightning has restored
    the optimisers' states (which hold the old one), to every parameter group.
    """

    def __init__(self, family: str, dataset: str, resumes: list | None = None):
        self.family, self.dataset, self.resumes = family, dataset, list(resumes or [])
        self._pending_rng = None

    def on_save_checkpoint(self, trainer, module, checkpoint):
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint[KEY] = {
            "family": self.family, "dataset": self.dataset, "image_shape": list(module.image_shape),
            "epoch": trainer.current_epoch, "batches_in_epoch": progress.completed, "global_step": trainer.global_step,
            "batches_per_epoch": trainer.num_training_batches, "rng": rng_states(), "resumes": self.resumes,
        }

    def on_train_start(self, trainer, module):
        lr = self.resumes[-1]["changed"].get("model.optimizer.lr") if self.resumes else None
        if lr is not None:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr[1]

    def on_load_checkpoint(self, trainer, module, checkpoint):
        self._pending_rng = checkpoint.get(KEY, {}).get("rng")

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._restore_rng()

    def on_fit_end(self, trainer, module):
        self._restore_rng()  # resumed with no batch left to train: testing draws what it would have

    def _restore_rng(self):
        if self._pending_rng is not None:
            set_rng_states(self._pending_rng)
            self._pending_rng = None


def read_checkpoint(path: Path, family: str, dataset: str) -> dict:
    """Load and check a checkpoint before resuming from it; returns its genzoo entry.

    Raises ConfigError (one line) when the file is missing, unreadable (truncated, not a
    checkpoint), has no genzoo entry, or was written by another family or for another dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist: pass ckpt_path=<an existing .ckpt> or resume=auto in a run directory")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises RuntimeError, EOFError, UnpicklingError, BadZipFile... for a damaged file
        raise ConfigError(
            f"checkpoint {path} is unreadable (truncated or corrupt: {type(err).__name__}): "
            "resume from another checkpoint (ckpt_path=...) or delete it to start afresh"
        ) from err
    entry = checkpoint.get(KEY) if isinstance(checkpoint, dict) else None
    if entry is None:
        raise ConfigError(f"checkpoint {path} was not written by a genzoo run (no '{KEY}' entry): pass a genzoo checkpoint")
    if (entry["family"], entry["dataset"]) != (family, dataset):
        raise ConfigError(
            f"checkpoint {path} is a {entry['family']} checkpoint for {entry['dataset']}, but this run is {family} on {dataset}: "
            f"pass model={entry['family']} data={entry['dataset']} or another checkpoint"
        )
    return entry


def resume_position(entry: dict) -> tuple[int, int]:
    """(epoch, batches already trained in it) to start the sampler at; an epoch-end checkpoint starts the next."""
    epoch, done = entry["epoch"], entry["batches_in_epoch"]
    if done >= entry["batches_per_epoch"]:
        return epoch + 1, 0
    return epoch, done


class sigint_as_sigterm:
    """Within the block, Ctrl-C (SIGINT) is delivered as SIGTERM, so Lightning stops at the end of
    the current batch (a consistent state to checkpoint) instead of raising mid-step."""

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, lambda signum, frame: signal.raise_signal(signal.SIGTERM))
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)
        return False


class PhaseInterrupted(BaseException):
    """SIGTERM or SIGINT outside fit; `phase` names the phase it stopped ("build", "test", "score", "record").

    A BaseException, as KeyboardInterrupt is, so no `except Exception` on the way swallows it.
    """

    def __init__(self, phase: str, signum: int):
        super().__init__(f"{signal.Signals(signum).name} during {phase}")
        self.phase, self.signum = phase, signum


class PhaseSignals:
    """SIGTERM and SIGINT raise PhaseInterrupted(phase) in every phase of a run except fit.

    Within the block, `phase` names the phase running. Around fit use `suspended()`: the
    handlers there are Lightning's (stop at the end of the current batch, then the
    Interruption callback saves), which would otherwise call this one mid-step. Outside a
    Lightning loop (scoring, writing the record) and inside trainer.test or the one-time
    classifier training, the signal stops the work at once; nothing half-written is left,
    because every file genzoo writes is written atomically.
    """

    def __init__(self):
        self.phase = "build"
        self.pending: list[int] = []  # signals noted while suspended (see suspended)

    def _raise(self, signum, frame):
        raise PhaseInterrupted(self.phase, signum)

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._raise) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False

    @contextlib.contextmanager
    def suspended(self):
        """Around fit: Lightning's connector and sigint_as_sigterm take the signals; this one only notes them in `pending`.

        Lightning stops fit at the end of the current batch and the Interruption callback
        saves. A signal in the moments before Lightning installs its handler or after it
        removes it (fit starting or ending) is only noted: the caller stops the run at the
        first safe point after fit (`pending` non-empty), instead of the default handler
        killing the process with nothing recorded. Lightning calls the noting handler too
        (it keeps the handler it found), which notes a signal it has already acted on.
        """
        self.pending = []
        mine = {s: signal.signal(s, lambda signum, frame: self.pending.append(signum)) for s in self._previous}
        try:
            yield
        finally:
            for s, handler in mine.items():
                signal.signal(s, handler)


class CheckpointWriteError(GenzooError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but atomic: serialise in memory, write a temporary file, rename.

    Raises CheckpointWriteError (one line) when the file cannot be written; the file at
    `path`, if any, is then the previous complete checkpoint and no temporary file is left.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as err:
            raise CheckpointWriteError(
                f"could not write checkpoint {path} ({err.strerror or err}); the previous {path.name}, if any, is intact: "
                "free space or pass a writable output_dir, then resume with resume=auto"
            ) from err


class Interruption(L.Callback):
    """On SIGTERM (and SIGINT, see sigint_as_sigterm) during fit: save `path` atomically and note where.

    Lightning stops at the end of the current training batch and calls on_exception; the
    checkpoint written here is a complete, consistent state (the batch fully applied) that
    resume=auto continues from. A signal during a validation loop (the sanity check, or
    an epoch's end) writes nothing: the RNG states there are mid-validation, so the last
    checkpoint written before (or none: a fresh start) is the exact resume point. `saved`,
    `step` (training batches done) and `epoch` say what happened.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.saved, self.step, self.epoch = False, None, None

    def on_exception(self, trainer, module, exception):
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return  # after fit (test) nothing is saved: last.ckpt stays the end of training
        self.step, self.epoch = batches_done(trainer), trainer.current_epoch
        if trainer.sanity_checking or trainer.validating:
            return
        trainer.save_checkpoint(self.path)
        self.saved = True


def resume_command(cfg, run_dir: Path) -> str:
    """The command line that continues this run: its overrides, its run directory, resume=auto."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return f"run(cfg) with output_dir={run_dir} resume=auto"
    keep = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "ckpt_path=", "output_dir="))]
    return " ".join(["python -m genzoo", *map(shlex.quote, [*keep, f"hydra.run.dir={run_dir}", "resume=auto"])])  # pastes into a shell
