"""One run in named phases: build from the config, train, test, score, write the record (metrics.json)."""

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from genzoo import families, protocol
from genzoo.artifacts import interleave_rows, save_grid
from genzoo.config import check_edit_classes, prepare, validate
from genzoo.data.datamodule import to_unit_range
from genzoo.errors import ConfigError, Interrupted, TrainingFailed
from genzoo.evaluation import comparison
from genzoo.evaluation.editing import DEFAULT_EDIT_SAMPLES, edit_run
from genzoo.evaluation.figures import write_guidance_tradeoff
from genzoo.evaluation.latent import write_latent_pictures
from genzoo.metrics.control import control_metrics
from genzoo.metrics.harness import build_extractor, curve_scorer, eval_cache_dir, evaluate
from genzoo.metrics.resources import flops_per_sample, peak_memory, reset_peak_memory
from genzoo.metrics.speed import timed_sampling
from genzoo.models.base import GenerativeModel
from genzoo.models.build import build_model
from genzoo.protocol import site_seed
from genzoo.training import rundir
from genzoo.training.callbacks import (
    DivergenceMonitor,
    LoadMonitor,
    MachineSpeed,
    QualityCurve,
    SampleGridLogger,
    TimeBudget,
    TrainingClock,
    TrainingDiverged,
    TrainingFlops,
    batches_done,
    curve_seconds,
    time_to_quality,
)
from genzoo.training.distributed import generate_across_ranks, process_group_left_on_exit
from genzoo.training.record import RunRecord
from genzoo.training.resume import (
    AtomicCheckpointIO,
    Interruption,
    PhaseInterrupted,
    PhaseSignals,
    ResumeState,
    read_checkpoint,
    resume_command,
    resume_position,
    sigint_as_sigterm,
)


@dataclass
class Run:
    """One run's parts, built from the config before training (see `build`)."""

    cfg: DictConfig
    run_dir: Path
    commit: str | None
    data: object
    model: GenerativeModel
    budget: dict
    hardware: dict
    speed: dict
    ckpt_path: str | None
    trainer: L.Trainer
    clock: TrainingClock
    monitor: DivergenceMonitor
    curve: QualityCurve
    interruption: Interruption
    scorer: tuple | None
    flops: TrainingFlops
    load: LoadMonitor
    lock: object = None  # the run directory's lock (genzoo.training.rundir.claim), held until the run ends
    resumes: list | None = None  # each start that continued this run: {"at_step", "changed": {key: [before, now]}}
    kept_previous: bool = False  # a finished record kept as metrics.previous.json until this run's completes
    machine: MachineSpeed | None = None  # the machine's measured speed (runs under a time budget)
    carried: dict | None = None  # a first stage's training, counted in this run's clock and FLOPs (genzoo.models.first_stage.carried_cost)


def run(cfg: DictConfig, callbacks: list | None = None) -> dict | None:
    """Train, sample and score one model; write its run directory and return metrics.json.

    The phases, each a function below: `build` (validate the config, seed, build the data
    module, the model and the Lightning Trainer with its callbacks: checkpoints last and
    best by val/loss, the quality curve, the divergence monitor), `train` (fit), `measure_test`
    (the final weights' likelihoods), `score` (samples.png, reconstructions.png, latent
    pictures, the evaluation harness over `budget.eval_samples` samples, control metrics
    for a conditional model) and `make_record` (metrics.json, a RunRecord), into
    `cfg.output_dir` (under the CLI: Hydra's run directory).

    Under DDP (hardware=ddp, ddp_cpu, slurm) every rank runs this function: Lightning
    splits training and test batches and averages the logged test metrics across ranks;
    the evaluation samples are drawn in shares by all ranks and gathered; rank zero alone
    scores them and writes files. Ranks other than zero return None.

    `callbacks`: more Lightning callbacks for this run's trainer (hooks of your own, tests).

    Resume: `resume=auto` continues from `<run dir>/checkpoints/last.ckpt` if there is one,
    `ckpt_path=<file>` from that file (checked first: genzoo checkpoint of this family and
    dataset, readable); weights, optimisers, EMA, loops, callbacks, RNG states and the
    position in the epoch are restored, so the run ends as the uninterrupted one would.

    Returns the metrics.json payload (genzoo.training.record.RunRecord.to_dict): {"model",
    "data", "status" ("completed" or "diverged"), "divergence", "skipped_steps", "metrics",
    "quality_curve", "timing", "resources", "protocol"}. A diverged run (non-finite loss or
    gradient) stops after training, keeping the last checkpoint written before: no test or
    scoring, status "diverged".
    Raises ConfigError or DatasetNotFoundError for bad input, before training;
    TrainingFailed when no step was trained (metrics.json status "failed");
    Interrupted after SIGTERM/SIGINT (a checkpoint saved, metrics.json status
    "interrupted"); CheckpointWriteError when a checkpoint cannot be written.
    """
    r = None
    with process_group_left_on_exit(), PhaseSignals() as signals:
        try:
            r = build(cfg, callbacks)
            signals.phase = "train"
            with signals.suspended():
                diverged = train(r)
            if signals.pending:  # came while fit was starting or ending, outside Lightning's handler: stop here
                raise PhaseInterrupted("test", signals.pending[0])
            if diverged is None and r.trainer.global_step == 0:
                _failed(r, "trained zero steps (the budget and batch size gave no training batch)")
            metrics, cards, sampling, eval_seconds = {}, {}, {}, 0.0
            if diverged is None:
                signals.phase = "test"
                metrics = measure_test(r)
                signals.phase = "score"
                scored = score(r)
                if scored is None:  # a DDP rank other than zero
                    return None
                quality, cards, sampling, eval_seconds = scored
                metrics.update(quality)
            if not r.trainer.is_global_zero:
                return None
            signals.phase = "record"
            record = make_record(r, diverged, metrics, cards, sampling, eval_seconds)
            record.write(r.run_dir / "metrics.json")
            signals.phase = "ended"  # the record is written: a signal from here on changes nothing
            if record.status == "completed":
                rundir.drop_previous_record(r.run_dir)
            return record.to_dict()
        except PhaseInterrupted as stop:
            if stop.phase == "ended":
                if record.status == "completed":
                    rundir.drop_previous_record(r.run_dir)
                return record.to_dict()
            _interrupted_outside_fit(cfg, r, stop.phase)
        finally:
            if r is not None and r.lock:
                r.lock.close()


def build(cfg: DictConfig, callbacks: list | None = None) -> Run:
    """Phase 1: check the config, seed everything, build data, model, checkpoint to resume from and Trainer.

    Everything that can be checked is checked here, before training: the config's values,
    the output directory, the edit classes, the checkpoint to resume from and the dataset.
    Writes config.yaml (rank zero). Raises ConfigError or DatasetNotFoundError.
    """
    commit = protocol.git_commit()  # the code this run starts with (files may change while it trains)
    validate(cfg)
    prepare(cfg)
    _check_launch(cfg)
    run_dir = _output_dir(cfg)
    lock = rundir.claim(run_dir)  # released when the run ends (Run.lock closed by run())
    try:
        return _build(cfg, callbacks, commit, run_dir, lock)
    except BaseException:
        if lock:
            lock.close()
        raise


def _build(cfg: DictConfig, callbacks, commit, run_dir: Path, lock) -> Run:
    # e.g. a first stage, trained or found; its training is carried into this run's clock and FLOPs
    carried = families.of_target(cfg.model._target_).model_class().prepare_run(cfg, run_dir) or {}
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    data = instantiate(cfg.data)
    check_edit_classes(cfg.get("edit_classes"), data.num_classes)
    model = build_model(cfg.model, data.image_shape, data.num_classes)
    budget = OmegaConf.to_container(cfg.budget, resolve=True)
    hardware = OmegaConf.to_container(cfg.hardware, resolve=True)
    speed = model.speed_up(hardware.get("compile", False), hardware.get("channels_last", False), hardware.get("fused_optimizer", False))
    data.n_test, data.order_seed = budget["n_test"], cfg.seed
    ckpt_path, resumes = _resume_checkpoint(cfg, run_dir, model.family, data)  # a bad checkpoint stops the run here ...
    data.setup("fit")  # ... and a missing dataset here, before the trainer starts
    _check_before_training(cfg, data, budget, hardware)
    minutes = budget.get("train_minutes")
    _check_carried(carried, minutes)
    clock, monitor, flops, load = TrainingClock(carried), DivergenceMonitor(cfg.max_skipped_steps), TrainingFlops(carried=carried.get("train_flops")), LoadMonitor()
    moments = curve_seconds(budget)  # a first stage's minutes are past when the second stage starts: its curve begins after them
    curve = QualityCurve(clock, budget["curve_points"], at_seconds=None if moments is None else [t for t in moments if t > clock.elapsed()], flops=flops)
    interruption = Interruption(run_dir / "checkpoints" / "last.ckpt")
    timed = [TimeBudget(clock, 60 * minutes, interruption.path)] if minutes else []  # after the curve: its last point is in the checkpoint
    machine = MachineSpeed() if minutes else None  # equal minutes compare only on machines of one speed; before the clock: not timed
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-epoch{epoch}-step{step}",
        monitor=model.checkpoint_monitor,
        mode="min",
        save_top_k=1 if model.checkpoint_monitor else 0,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,  # a resumed run overwrites last.ckpt (atomically) instead of writing last-v1.ckpt
    )
    trainer = L.Trainer(
        accelerator=hardware["accelerator"],
        devices=hardware["devices"],
        num_nodes=hardware.get("num_nodes", 1),
        strategy=_strategy(hardware, model),
        precision=hardware["precision"],
        max_epochs=budget["max_epochs"],
        max_steps=budget["max_steps"],
        limit_train_batches=budget["limit_train_batches"],
        limit_val_batches=budget["limit_val_batches"],
        logger=_logger(cfg, run_dir),
        callbacks=[checkpoints, *([machine] if machine else []), clock, flops, load, monitor, curve, *timed, ResumeState(model.family, data.name, resumes), interruption,
                   SampleGridLogger(seed=site_seed("grid", cfg.seed)), *(callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir),
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    scorer = curve_scorer(data, cfg.eval, budget["curve_samples"], cfg.seed, trainer.strategy.root_device) if curve.n_points or curve.at_seconds else None
    curve.score = scorer[0] if scorer else None
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # training starts from the seed, whatever the scorer's set-up drew
    previous_config = run_dir / "config.yaml" if ckpt_path is not None or cfg.get("resume") == "auto" else None
    with open_dict(cfg):
        cfg.run_id = rundir.run_id(cfg, previous_config)
    kept_previous = False
    if trainer.is_global_zero:
        kept_previous = previous_config is not None and rundir.keep_previous_record(run_dir)  # before anything replaces it
        rundir.write_config(cfg, run_dir)
    return Run(cfg, run_dir, commit, data, model, budget, hardware, speed, ckpt_path, trainer, clock, monitor, curve, interruption, scorer,
               flops, load, lock, resumes, kept_previous, machine, carried or None)


def _check_carried(carried: dict, minutes: float | None) -> None:
    """Raise ConfigError when a first stage's training already fills the run's time budget (nothing left for the second stage)."""
    seconds = carried.get("train_seconds") or 0.0
    if minutes and seconds >= 60 * minutes:
        raise ConfigError(f"the first stage ({carried.get('run')}) trained {seconds / 60:.1f} min, the whole budget.train_minutes={minutes:g}: "
                          "a two-stage run's minutes count both stages; give a first stage trained for less (or none: the run "
                          "trains one for budget.first_stage_share of the minutes), or raise budget.train_minutes")


def train(r: Run) -> dict | None:
    """Phase 2: fit. Returns None, or the divergence details when a non-finite loss stopped training.

    Raises Interrupted after SIGTERM/SIGINT (status "interrupted" recorded, checkpoint saved).
    """
    reset_peak_memory()
    try:
        with sigint_as_sigterm():
            r.trainer.fit(r.model, datamodule=r.data, ckpt_path=r.ckpt_path)
    except TrainingDiverged as err:
        return err.details
    except SIGTERMException:
        _interrupted(r)
    return None


def measure_test(r: Run) -> dict:
    """Phase 3: the test split's metrics of the final weights (likelihoods, reconstruction error), {name: float}."""
    return {k: float(v) for k, v in r.trainer.test(r.model, datamodule=r.data, verbose=False)[0].items()}


def score(r: Run) -> tuple[dict, dict, dict, float] | None:
    """Phase 4: pictures and sample-quality metrics; (metrics, cards, sampling timing, seconds), None on ranks other than zero.

    All ranks draw the evaluation samples in shares (under DDP); rank zero writes
    samples.png, reconstructions.png, the latent pictures, scores the samples with the
    harness and, for a conditional model, the control metrics and guidance_tradeoff.png.
    """
    cfg, model, data = r.cfg, r.model, r.data
    n_eval = min(r.budget["eval_samples"], len(data.test_images))
    start = time.perf_counter()
    classifier = "classifier" in (cfg.eval.extractors or [])
    choice = None
    if classifier and r.budget.get("sampler_selection_samples") and model.sampler_options():
        if r.trainer.is_global_zero:
            choice = comparison.choose_sampler(model, data, cfg.eval, r.budget["sampler_selection_samples"], cfg.seed, model.device)
        choice = r.trainer.strategy.broadcast(choice, src=0)
        model.use_sampler(choice["settings"])  # every rank draws with rank zero's choice
    eval_seed = site_seed("evaluation", cfg.seed)
    fake = generate_across_ranks(model.sample, n_eval, cfg.eval.batch_size, eval_seed, r.trainer.strategy) if cfg.eval.extractors else None
    if not r.trainer.is_global_zero:
        return None
    sampling = _write_pictures(model, data, r.run_dir, site_seed("grid", cfg.seed), r.budget["grid_samples"])
    write_latent_pictures(model, data, r.run_dir, site_seed("grid", cfg.seed))
    metrics, cards = evaluate(model.sample, data, cfg.eval, n_eval, cfg.seed, r.run_dir, device=model.device, fake=fake)
    if classifier:  # editing labels and scores its images with the domain classifier
        editing, editing_cards = edit_run(model, data, cfg.eval, cfg.get("edit_classes"), r.budget.get("edit_samples", DEFAULT_EDIT_SAMPLES),
                                          site_seed("editing", cfg.seed), r.run_dir)
        metrics.update(editing)
        cards.update(editing_cards)
    if classifier:
        metrics["floor"] = comparison.floor(data, cfg.eval, n_eval, cfg.seed, model.device)
        if choice is not None:
            metrics["sampler_selection"] = choice
        if r.budget.get("reference_samples"):
            metrics["reference_samplers"] = comparison.reference_rows(model, data, cfg.eval, r.budget["reference_samples"], fake, cfg.seed, model.device)
    if model.conditional and "classifier" in (cfg.eval.extractors or []):
        control, control_cards = _control(model, data, cfg, r.budget, n_eval, r.run_dir)
        metrics.update(control)
        cards.update(control_cards)
    return metrics, cards, sampling, time.perf_counter() - start


def make_record(r: Run, diverged: dict | None, metrics: dict, cards: dict, sampling: dict, eval_seconds: float) -> RunRecord:
    """Phase 5: the run's RunRecord (metrics.json) from what the phases measured."""
    model, data, trainer, clock, cfg = r.model, r.data, r.trainer, r.clock, r.cfg
    params = sum(p.numel() for p in model.trainable_parameters())
    world = trainer.world_size
    return RunRecord(
        model=model.family,
        data=data.name,
        run_id=cfg.run_id,
        status="completed" if diverged is None else "diverged",
        divergence=diverged,
        skipped_steps=r.monitor.skipped_steps,
        metrics=metrics,
        quality_curve={"card": r.scorer[1] if r.scorer else None, "points": r.curve.points,
                       "floor": _curve_floor(r) if r.scorer and r.scorer[1].get("metric") == "fid_classifier" else None},
        timing={
            "train_seconds": clock.train_seconds,
            "train_images_per_second": clock.images_per_second,
            "train_images": clock.images,
            "time_to_quality_seconds": time_to_quality(r.curve.points),
            "train_minutes_budget": r.budget.get("train_minutes"),
            "train_flops": r.flops.total(batches_done(trainer)),
            "train_flops_per_batch": r.flops.per_batch,
            **({"first_stage": r.carried} if r.carried else {}),  # the part of train_seconds, train_images and train_flops the first stage trained
            "batches": batches_done(trainer),
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "params": params,
            **sampling,
            "eval_seconds": eval_seconds,
        },
        resources={
            "params": params,
            "nfe_per_sample": model.nfe_per_sample,
            "flops_per_sample": flops_per_sample(model.sample),
            **peak_memory(model.device),
        },
        protocol={
            "split": "test",
            "n_test": len(data.test_set),
            "seed": cfg.seed,
            "resumed": r.resumes or [],
            "seed_offsets": dict(protocol.SEED_OFFSETS),
            "budget": cfg.budget.name,
            "batch_size": data.batch_size,
            "hardware": {**protocol.hardware(trainer.strategy.root_device, r.hardware["precision"], world, type(trainer.strategy).__name__),
                         "speed": r.speed, "precision_rule": r.hardware.get("precision_rule"), "load_while_training": r.load.summary(),
                         **({"speed_probe": probe} if (probe := r.machine and r.machine.summary()) else {})},
            "versions": protocol.versions(),
            "git_commit": r.commit,
            "evaluated_weights": "final (last) weights",
            "eval_sampling": "one seeded generator" if world == 1 else f"{world} ranks draw equal shares, seeds genzoo.training.distributed.rank_seed",
            "time_to_quality": "train seconds until the quality curve first comes within 10% of its final value (genzoo.training.callbacks.time_to_quality)",
            "family": model.protocol(),
            "metric_cards": cards,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _curve_floor(r: Run) -> dict:
    """The real-data floor at the quality curve's n: what its FIDs would be for a perfect model."""
    return comparison.floor(r.data, r.cfg.eval, r.budget["curve_samples"], r.cfg.seed, r.model.device)


def _output_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir:
        path = Path(cfg.output_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            raise ConfigError("output_dir is not set: pass output_dir=<dir> when calling genzoo.run outside the CLI")
        path = Path(HydraConfig.get().runtime.output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()  # can we write here? (before any training)
    except OSError as err:
        raise ConfigError(f"output directory {path} is not writable ({err.strerror}): pass output_dir=<a writable directory>") from err
    return path


def _control(model, data, cfg: DictConfig, budget: dict, n: int, run_dir: Path) -> tuple[dict, dict]:
    """Class accuracy, per-class FID and (with guidance) the guidance sweep of a conditional model."""
    cache_dir = eval_cache_dir(cfg.eval)
    extractor = build_extractor("classifier", data, cache_dir, model.device)
    scales = list(cfg.eval.get("guidance_scales") or []) if hasattr(model, "guidance_scale") else []
    metrics, card = control_metrics(model, data, extractor, cache_dir, n, cfg.seed, cfg.eval.batch_size, scales, budget["guidance_samples"])
    if metrics.get("guidance_sweep"):
        write_guidance_tradeoff(metrics["guidance_sweep"], run_dir / "guidance_tradeoff.png")
    return metrics, {name: {"metric": text} for name, text in card.items()}


def _resume_checkpoint(cfg: DictConfig, run_dir: Path, family: str, data) -> tuple[str | None, list]:
    """(the checkpoint to resume from, checked, with the data order set to its position, or None; the run's resumes).

    A directory that already holds a run is refused unless this start continues that very
    run (resume=auto, or a checkpoint of its own); resuming checks the identity against
    the config.yaml of the checkpoint's run (before this run's replaces it). The resumes:
    the checkpoint's earlier ones and this one, {"at_step", "changed": {key: [before, now]}}.
    """
    path = cfg.get("ckpt_path")
    requeued = sorted(run_dir.glob("hpc_ckpt_*.ckpt"), key=lambda p: p.stat().st_mtime)  # Lightning's SLURM requeue saves
    if path is None and requeued and "SLURM_JOB_ID" in os.environ:
        path = requeued[-1]
        print(f"genzoo: requeued SLURM job: resuming from {path}")
    if path is None and cfg.get("resume") == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        path = last if last.is_file() else None
        print(f"genzoo: resume=auto: {'resuming from ' + str(last) if path else 'no checkpoint in ' + str(last.parent) + ', starting afresh'}")
    if path is None:
        if cfg.get("resume") == "auto":
            rundir.check_identity(cfg, run_dir / "config.yaml")  # a run that saved no checkpoint yet is still that run
        else:
            rundir.check_fresh(run_dir)
        return None, []
    entry = read_checkpoint(Path(path), family, data.name)
    ckpt_dir = Path(path).resolve().parent
    own = ckpt_dir in (run_dir.resolve(), (run_dir / "checkpoints").resolve())
    if not own:
        rundir.check_fresh(run_dir)  # a checkpoint of another run continues into a directory of its own
    changed = rundir.check_identity(cfg, (run_dir if own else ckpt_dir.parent) / "config.yaml")
    data.resume_at(*resume_position(entry))
    return str(path), [*entry.get("resumes", []), {"at_step": entry.get("global_step"), "changed": changed}]


def _interrupted(r: Run) -> None:
    """After SIGTERM/SIGINT: record status "interrupted" (rank zero) and raise Interrupted with the resume command."""
    interruption, cfg, run_dir = r.interruption, r.cfg, r.run_dir
    where = {"phase": "train", "step": interruption.step, "epoch": interruption.epoch,
             "checkpoint": str(interruption.path) if interruption.saved else None}
    _write_stub(r, "interrupted", interruption=where)
    raise Interrupted(
        f"interrupted at training batch {where['step']} (epoch {where['epoch']}); "
        + (f"checkpoint {where['checkpoint']} saved" if interruption.saved else "during validation, nothing new saved")
        + f"; resume with: {resume_command(cfg, run_dir)}"
    )


def _interrupted_outside_fit(cfg: DictConfig, r: Run | None, phase: str) -> None:
    """After SIGTERM/SIGINT outside fit: record status "interrupted" (when a run was built) and raise Interrupted.

    Before training (phase "build") nothing was trained or saved; after it, last.ckpt is the
    end of training (nothing is written after fit ends), and resume=auto continues from there
    straight to testing and scoring.
    """
    if r is None:
        raise Interrupted("interrupted before training started (while building the run): nothing was saved; run the same command again")
    last = r.run_dir / "checkpoints" / "last.ckpt"
    where = {"phase": phase, "step": r.trainer.global_step, "epoch": r.trainer.current_epoch,
             "checkpoint": str(last) if last.is_file() and phase != "build" else None}
    _write_stub(r, "interrupted", interruption=where)
    if phase in ("build", "train"):
        raise Interrupted(f"interrupted before training started: nothing new saved; resume with: {resume_command(cfg, r.run_dir)}")
    raise Interrupted(f"interrupted during {phase}, after training ended (checkpoint {last} is the end of training, unchanged); "
                      f"resume with: {resume_command(cfg, r.run_dir)}")


def _failed(r: Run, why: str) -> None:
    """Record status "failed" with the reason (rank zero) and raise TrainingFailed."""
    _write_stub(r, "failed", failure=why)
    raise TrainingFailed(f"{why}: nothing to test or score, status \"failed\" in {r.run_dir / 'metrics.json'}")


def _write_stub(r: Run, status: str, **fields) -> None:
    """metrics.json of a run that holds no result (interrupted, failed), on rank zero; names a kept previous record."""
    if r.trainer.is_global_zero:
        previous = rundir.PREVIOUS_RECORD if r.kept_previous else None
        RunRecord(model=r.model.family, data=r.data.name, run_id=r.cfg.run_id, status=status, previous_record=previous,
                  **fields).write(r.run_dir / "metrics.json")


def _check_before_training(cfg: DictConfig, data, budget: dict, hardware: dict) -> None:
    """Raise ConfigError (one line) for what would fail or mean nothing after training: checked before any step."""
    if hardware["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"hardware.accelerator={hardware['accelerator']} needs a CUDA GPU and this machine shows none: "
                          "use hardware=cpu (or hardware=auto, which takes a GPU when there is one)")
    n_train, batch = len(data.train_set), data.batch_size
    if n_train < batch:
        raise ConfigError(f"data.batch_size={batch} is larger than the training split ({n_train} images), so no full "
                          f"training batch exists: use data.batch_size<={n_train}")
    limit, n_batches = budget["limit_train_batches"], n_train // batch  # training batches drop the last partial one
    if isinstance(limit, float) and int(limit * n_batches) < 1:
        raise ConfigError(f"budget.limit_train_batches={limit} is less than one of the {n_batches} training batches: "
                          f"use a share >= {1 / n_batches:.2g} or a whole number of batches (budget.limit_train_batches=1)")
    extractors = list(cfg.eval.extractors or [])
    if extractors:
        n_eval = min(budget["eval_samples"], len(data.test_images))
        for key, needs in (("pr_k", "precision and recall take each sample's"), ("dc_k", "density and coverage take each real image's")):
            k = cfg.eval[key]
            if n_eval <= k:
                raise ConfigError(f"budget.eval_samples={budget['eval_samples']} scores {n_eval} samples, not above eval.{key}={k} "
                                  f"({needs} k-th nearest neighbour): use budget.eval_samples>{k}")
        cache = eval_cache_dir(cfg.eval)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=cache).close()
        except OSError as err:
            raise ConfigError(f"evaluation cache {cache} is not a writable directory ({err.strerror}): "
                              "set eval.cache_dir=<a writable directory> or GENZOO_CACHE") from err


def _strategy(hardware: dict, model: GenerativeModel):
    """Lightning strategy: "auto" (one device) or DDP with the configured process-group backend.

    A family whose steps leave some parameters without gradients (the GAN: the generator in
    the discriminator's update) sets `ddp_find_unused_parameters`, so DDP's reducer does not wait for them.
    """
    if hardware.get("strategy", "auto") != "ddp":
        return hardware.get("strategy", "auto")
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(process_group_backend=hardware.get("process_group_backend"), find_unused_parameters=model.ddp_find_unused_parameters)


def _check_launch(cfg: DictConfig) -> None:
    """DDP started by Lightning re-runs the command line, which a Hydra multirun cannot take."""
    if cfg.hardware.get("strategy") != "ddp" or "SLURM_NTASKS" in os.environ:
        return
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            "hardware with strategy=ddp cannot run inside a local Hydra multirun (Lightning relaunches the command per device): "
            "run each job on its own, or sweep with hardware=slurm (one task per device)"
        )


def _logger(cfg: DictConfig, run_dir: Path):
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    return instantiate(cfg.logger, save_dir=str(run_dir))


@torch.no_grad()
def _write_pictures(model: GenerativeModel, data, run_dir: Path, seed: int, n: int = 64) -> dict:
    """samples.png: a grid of n samples, 8 per row, from the model's sampler (seeded); reconstructions.png for AE/VAE.

    Returns the sampling timing for metrics.json: images/s drawing the grid's n images in
    one batch with the configured sampler (which it names).
    """
    model.eval()
    images, seconds = timed_sampling(lambda: model.sample(n, generator=torch.Generator().manual_seed(seed)))
    save_grid(images, run_dir / "samples.png")
    if hasattr(model, "reconstruct"):
        x = to_unit_range(data.test_images[:32]).to(model.device)  # the whole split: n_test may be < 32
        labels = {"labels": data.test_labels[: len(x)].to(model.device)} if model.conditional else {}
        save_grid(interleave_rows(x, model.reconstruct(x, **labels)), run_dir / "reconstructions.png")
    return {
        "sample_images_per_second": n / seconds,
        "sample_batch_size": n,
        "sampler": model.protocol()["sampler"],
    }
