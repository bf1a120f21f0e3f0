"""Composing and validating configs before anything runs.

The schema is the table `RULES` (keys outside a family) and each family's own
`family.schema` in genzoo/conf/model/<name>.yaml (its model.* keys, by the names of
`RULE_KINDS`): for each key, what a valid value is. A key absent from the composed config
is not checked. `prepare` then applies what the family's traits decide (its budget and
data changes, float32 for a likelihood family; genzoo/families.py). Group options
(model=..., data=...) are checked against the files in genzoo/conf/ first, so a typo gives one
line with the allowed values instead of Hydra's multi-line report.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict

from genzoo import families
from genzoo.errors import ConfigError
from genzoo.families import Family
from genzoo.paths import config_dir

GROUPS = ("model", "data", "hardware", "logger", "budget", "eval", "experiment")


def when_conditional(value, *, _parent_):
    """`${when_conditional:v}` in a model config: v when that model is conditional (model.conditional true), else null.

    A default that only a class-conditional model takes (the GAN's auxiliary classifier); the
    run's config.yaml records the resolved value, so a later change of the default does not
    change what an old run's config builds. `model.<key>=null` on the command line turns it off.
    """
    return value if _parent_.get("conditional") else None


OmegaConf.register_new_resolver("when_conditional", when_conditional, replace=True)


@dataclass(frozen=True)
class Rule:
    """What a valid value of one key is: `check(value)` holds; `want` says it in words."""

    check: Callable[[object], bool]
    want: str
    example: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


MAX_SEED = 2**32 - 1


def _is_batch_limit(v) -> bool:
    """Lightning's limit_*_batches: an int number of batches, or a float share of the epoch."""
    return (_is_int(v) and v > 0) or (isinstance(v, float) and 0 < v <= 1)


POSITIVE_INT = Rule(lambda v: _is_int(v) and v > 0, "a positive integer", "16")
POSITIVE_NUMBER = Rule(lambda v: _is_number(v) and v > 0, "a positive number", "1e-3")


def non_negative(example: str) -> Rule:
    """A number >= 0."""
    return Rule(lambda v: _is_number(v) and v >= 0, "a number >= 0", example)


def positive_int_or_null(example: str) -> Rule:
    """A positive integer, or null (a default decided elsewhere)."""
    return Rule(lambda v: v is None or (_is_int(v) and v > 0), "a positive integer or null", example)


def one_of(*options: str) -> Rule:
    """One of `options`; the first is the example."""
    return Rule(lambda v: v in options, f"one of {', '.join(options)}", options[0])


# Named rules a family's schema (its yaml's family.schema) refers to; a list there means one_of.
RULE_KINDS: dict[str, Rule] = {
    "positive_int": POSITIVE_INT,
    "positive_number": POSITIVE_NUMBER,
    "non_negative": non_negative("1.0"),
    "bool": Rule(lambda v: isinstance(v, bool), "true or false", "true"),
    "bool_or_null": Rule(lambda v: v is None or isinstance(v, bool), "true, false or null (the family's default)", "true"),
    "non_negative_int": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer", "0"),
    "probability": Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)", "0.1"),
    "unit_interval": Rule(lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]", "0.05"),
    "probability_or_null": Rule(lambda v: v is None or (_is_number(v) and 0 <= v < 1), "a number in [0, 1) or null (off)", "0.999"),
    "odd_int_ge_3": Rule(lambda v: _is_int(v) and v >= 3 and v % 2 == 1, "an odd integer >= 3", "5"),
    "positive_int_or_null": positive_int_or_null("5"),
    "run_dir_or_null": Rule(lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "a run directory or null",
                            "outputs/vqvae-fashion_mnist/<time>"),
    "positive_number_or_null": Rule(lambda v: v is None or (_is_number(v) and v > 0), "a positive number or null", "50.0"),
    "positive_int_list": Rule(
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(c) and c > 0 for c in v), "a non-empty list of positive integers", "[32,64]"
    ),
    "int_list": Rule(lambda v: isinstance(v, list) and all(_is_int(c) and c >= 0 for c in v), "a list of non-negative integers", "[2]"),
    "epoch_span_or_null": Rule(
        lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(_is_number(e) and e >= 0 for e in v) and v[0] <= v[1]),
        "null or [start, end], epochs with 0 <= start <= end",
        "[0,5]",
    ),
    "betas_or_null": Rule(
        lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v)),
        "null or two numbers in [0, 1)",
        "[0.5,0.999]",
    ),
}


def _dit_sizes() -> Rule:
    """One of the DiT's named sizes (genzoo/nets/dit.py SIZES), imported only when a schema asks (it imports torch)."""
    from genzoo.nets.dit import SIZES

    return one_of(*SIZES)


# Rule kinds built when a family's schema names them, because building them imports what config.py must not.
DEFERRED_RULE_KINDS: dict[str, Callable[[], Rule]] = {"dit_size": _dit_sizes}

# Keys outside model.* (and the model keys every family has); each family's own model.*
# keys are checked by its schema (family_rules).
RULES: dict[str, Rule] = {
    "seed": Rule(lambda v: _is_int(v) and 0 <= v <= MAX_SEED, f"an integer in 0..{MAX_SEED} (numpy and Lightning take 32-bit seeds)", "0"),
    "resume": one_of("never", "auto"),
    "ckpt_path": Rule(lambda v: v is None or isinstance(v, str), "a path to a .ckpt file or null", "outputs/vae-fashion_mnist/<time>/checkpoints/last.ckpt"),
    "max_skipped_steps": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer", "0"),
    "data.batch_size": POSITIVE_INT,
    "data.val_fraction": Rule(lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)", "0.1"),
    "data.num_workers": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer", "0"),
    "data.loader": one_of("device", "dataloader"),
    "data.random_flip": RULE_KINDS["bool"],
    "model.conditional": RULE_KINDS["bool"],
    "model.optimizer.lr": POSITIVE_NUMBER,
    "budget.max_epochs": Rule(lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer or -1", "10"),
    "budget.limit_train_batches": Rule(_is_batch_limit, "a positive number of batches or a share in (0, 1]", "20"),
    "budget.limit_val_batches": Rule(lambda v: _is_batch_limit(v) or v == 0, "a number of batches >= 0 or a share in (0, 1]", "4"),
    "budget.max_steps": Rule(lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer or -1 (no limit)", "-1"),
    "budget.eval_samples": POSITIVE_INT,
    "budget.grid_samples": POSITIVE_INT,
    "budget.guidance_samples": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer (0: no guidance sweep)", "500"),
    "eval.guidance_scales": Rule(lambda v: isinstance(v, list) and all(_is_number(w) and w >= 0 for w in v), "a list of numbers >= 0", "[0,1,2]"),
    "budget.edit_samples": Rule(lambda v: _is_int(v) and v >= 4, "an integer >= 4 (codes labelled for editing)", "2000"),
    "budget.curve_points": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer (0: no quality curve)", "4"),
    "budget.curve_samples": Rule(lambda v: _is_int(v) and v > 1, "an integer > 1", "256"),
    "hardware.strategy": one_of("auto", "ddp"),
    "hardware.compile": RULE_KINDS["bool"],
    "hardware.channels_last": RULE_KINDS["bool"],
    "hardware.fused_optimizer": RULE_KINDS["bool"],
    "hardware.precision": one_of("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true"),
    "eval.batch_size": POSITIVE_INT,
    "eval.kid_subsets": POSITIVE_INT,
    "eval.kid_subset_size": Rule(lambda v: _is_int(v) and v > 1, "an integer > 1", "1000"),
    "eval.pr_k": POSITIVE_INT,
    "eval.dc_k": POSITIVE_INT,
    "eval.memorisation_percentile": Rule(lambda v: _is_number(v) and 0 < v < 100, "a number in (0, 100)", "1.0"),
    "eval.extractors": Rule(
        lambda v: isinstance(v, list) and all(e in ("classifier", "inception") for e in v), "a list drawn from classifier, inception", "[classifier]"
    ),
    "budget.n_test": positive_int_or_null("1000"),
    "budget.first_stage_share": Rule(lambda v: _is_number(v) and 0 < v < 1, "a share of budget.train_minutes in (0, 1)", "0.3"),
    "budget.train_minutes": Rule(lambda v: v is None or (_is_number(v) and v > 0), "a positive number of training minutes or null (no time limit)", "10"),
    "budget.curve_minutes": Rule(
        lambda v: v is None or (isinstance(v, list) and len(v) > 0 and all(_is_number(m) and m > 0 for m in v)),
        "a non-empty list of positive training minutes or null (budget.curve_points evenly spaced instead)", "[1,2,5,10]"),
    "budget.sampler_selection_samples": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer (0: no sampler selection)", "500"),
    "budget.reference_samples": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer (0: no reference sampler)", "128"),
}


def family_rules(fam: Family) -> dict[str, Rule]:
    """{"model.<key>": Rule} from a family's schema; raises ConfigError for an unknown rule name there."""
    rules = {}
    for key, spec in fam.schema.items():
        if isinstance(spec, list):
            rules[f"model.{key}"] = one_of(*map(str, spec))
        elif spec in RULE_KINDS:
            rules[f"model.{key}"] = RULE_KINDS[spec]
        elif spec in DEFERRED_RULE_KINDS:
            rules[f"model.{key}"] = DEFERRED_RULE_KINDS[spec]()
        else:
            raise ConfigError(f"genzoo/conf/model/{fam.name}.yaml: family.schema.{key}={spec!r} is not a rule: "
                              f"use a list of options or one of {', '.join([*RULE_KINDS, *DEFERRED_RULE_KINDS])}")
    return rules


def group_options(group: str) -> list[str]:
    """The options of a config group: the names of its yaml files in genzoo/conf/<group>/."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def check_group_choices(overrides: Iterable[str]) -> None:
    """Raise ConfigError for an override that picks a group option that does not exist.

    Understands `group=a` and sweeps `group=a,b`; leaves other forms to Hydra.
    """
    for item in overrides:
        key, sep, value = item.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or "(" in value:
            continue
        allowed = group_options(key)
        for choice in value.split(","):
            if choice.strip() not in allowed:
                raise ConfigError(f"unknown {key} option '{choice}': choose one of {', '.join(allowed)} (e.g. {key}={allowed[0]})")


def load_config(overrides: Iterable[str] = ()) -> DictConfig:
    """Compose genzoo/conf/config.yaml with `overrides` (as on the command line) and validate it.

    For tests and notebooks: `run(load_config(["model=ae", "output_dir=/tmp/x"]))`; inside the
    CLI (GlobalHydra initialised, with genzoo's config directory) it composes with that Hydra.
    Raises ConfigError for an unknown group option or an invalid value.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    check_group_choices(overrides)
    if GlobalHydra.instance().is_initialized():  # inside the CLI (a run that trains its first stage): its Hydra composes
        cfg = compose(config_name="config", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    return prepare(cfg, overrides)


def _check(key: str, value, rule: Rule) -> None:
    """Raise ConfigError naming `key` unless `value` passes `rule`."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if not rule.check(value):
        raise ConfigError(f"{key}={value!r} is invalid: it must be {rule.want} (e.g. {key}={rule.example})")


def validate(cfg: DictConfig) -> None:
    """Check every key of RULES, and of the family's schema, present in cfg; raise ConfigError naming the first bad one."""
    rules = dict(RULES)
    target = OmegaConf.select(cfg, "model._target_")
    if target is not None:
        rules.update(family_rules(families.of_target(target)))
    for key, rule in rules.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            _check(key, value, rule)
    budget = OmegaConf.select(cfg, "budget")
    if budget is not None and budget.get("max_epochs") == -1 and budget.get("max_steps", -1) == -1 and not budget.get("train_minutes"):
        raise ConfigError("budget.max_epochs=-1 with budget.max_steps=-1 and no budget.train_minutes never stops training: "
                          "set one of them (e.g. budget.train_minutes=10)")


# Lightning precisions whose arithmetic is coarser than float32.
REDUCED_PRECISIONS = ("bf16-mixed", "16-mixed", "bf16-true", "16-true")


def precision_for(fam: Family, precision: str) -> tuple[str, str | None]:
    """(precision the family trains and is tested in, the reason when it differs from the preset's).

    The one rule: a family that reports a likelihood (exact or bound) stays in float32
    under every reduced-precision preset: its bits/dim score 256-level pixel bins 2/255
    wide, and near |x| = 1 bf16's steps are as wide as a bin. Other families keep `precision`.
    """
    if fam.likelihood and precision in REDUCED_PRECISIONS:
        return "32-true", f"{fam.name} reports a likelihood ({fam.likelihood}): float32 instead of {precision}, so bits/dim are not rounded"
    return precision, None


def prepare(cfg: DictConfig, overrides: Iterable[str] | None = None) -> DictConfig:
    """Make cfg what its family gets, in place, once: its budget and data changes and the precision rule.

    The family's `family.budget.<budget name>` values replace the budget's, and its
    `family.data` values the data config's, except keys the user set on the command line
    (`budget.<key>=...`, `data.<key>=...` in `overrides`; under the CLI, Hydra's task
    overrides), which win; the changed values are checked as the command line's are.
    `hardware.precision` follows `precision_for` (the reason, if any, in
    `hardware.precision_rule`). `overrides` is kept as `cfg.overrides` (what this start's
    command line set). Marks `budget.for_family`, so a second call changes nothing.
    Returns cfg. Raises ConfigError for a family.data key the data config does not have.
    """
    target = OmegaConf.select(cfg, "model._target_")
    if target is None or OmegaConf.select(cfg, "budget.for_family") is not None:
        return cfg
    fam = families.of_target(target)
    if overrides is None:
        overrides = _hydra_task_overrides()
    keys = [o.lstrip("+~").partition("=")[0] for o in overrides]
    explicit = {group: {k.partition(".")[2] for k in keys if k.startswith(f"{group}.")} for group in ("budget", "data")}
    with open_dict(cfg):
        if "budget" in cfg:
            for key, value in (fam.budget.get(cfg.budget.get("name")) or {}).items():
                if key not in explicit["budget"]:
                    cfg.budget[key] = value
            cfg.budget.for_family = fam.name
        if "data" in cfg:
            for key, value in fam.data.items():
                if key not in cfg.data:
                    raise ConfigError(f"family.data.{key} of model={fam.name} is not a data key: use one of {', '.join(cfg.data)}")
                if key not in explicit["data"]:
                    if f"data.{key}" in RULES:
                        _check(f"data.{key}", value, RULES[f"data.{key}"])
                    cfg.data[key] = value
        cfg.overrides = list(overrides)
        if "hardware" in cfg and "precision" in cfg.hardware:
            cfg.hardware.precision, reason = precision_for(fam, cfg.hardware.precision)
            if reason:
                cfg.hardware.precision_rule = reason
    return cfg


def _hydra_task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


_ABSENT = object()


def check_edit_classes(edit, num_classes: int) -> None:
    """Raise ConfigError unless `edit_classes` is null or two different classes of the data."""
    if edit is None:
        return
    edit = list(edit) if OmegaConf.is_config(edit) or isinstance(edit, (list, tuple)) else [edit]
    if len(edit) != 2 or edit[0] == edit[1] or not all(isinstance(c, int) and 0 <= c < num_classes for c in edit):
        raise ConfigError(f"edit_classes={edit} is invalid: it must be two different classes in 0..{num_classes - 1} "
                          "(e.g. edit_classes=[7,9]) or null")
