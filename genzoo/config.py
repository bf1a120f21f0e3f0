"""Composing and validating configs before anything runs.

The schema is the table `RULES`: for each key, what a valid value is. A key absent from
the composed config (a family without `beta`, say) is not checked. Group options
(model=..., data=...) are checked against the files in conf/ first, so a typo gives one
line with the allowed values instead of Hydra's multi-line report.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from genzoo.errors import ConfigError
from genzoo.paths import config_dir

GROUPS = ("model", "data", "hardware", "logger", "budget", "eval", "experiment")


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


RULES: dict[str, Rule] = {
    "seed": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer", "0"),
    "resume": one_of("never", "auto"),
    "ckpt_path": Rule(lambda v: v is None or isinstance(v, str), "a path to a .ckpt file or null", "outputs/vae-fashion_mnist/<time>/checkpoints/last.ckpt"),
    "max_skipped_steps": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer", "0"),
    "data.batch_size": POSITIVE_INT,
    "data.val_fraction": Rule(lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)", "0.1"),
    "data.num_workers": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer", "0"),
    "data.loader": one_of("device", "dataloader"),
    "data.random_flip": Rule(lambda v: isinstance(v, bool), "true or false", "true"),
    "model.latent_dim": POSITIVE_INT,
    "model.hidden_dim": POSITIVE_INT,
    "model.iwae_k": POSITIVE_INT,
    "model.beta": non_negative("1.0"),
    "model.likelihood": one_of("gaussian", "bernoulli", "softmax", "logistic_mixture"),  # VAE: the first two; PixelCNN: the last two
    "model.mixtures": POSITIVE_INT,
    "model.conditional": Rule(lambda v: isinstance(v, bool), "true or false", "true"),
    "model.p_uncond": Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)", "0.1"),
    "model.guidance_scale": non_negative("2.0"),
    "model.features": POSITIVE_INT,
    "model.layers": POSITIVE_INT,
    "model.kernel": Rule(lambda v: _is_int(v) and v >= 3 and v % 2 == 1, "an odd integer >= 3", "5"),
    "model.net": one_of("conv", "mlp"),
    "model.channels": Rule(
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(c) and c > 0 for c in v), "a non-empty list of positive integers", "[32,64]"
    ),
    "model.optimizer.lr": POSITIVE_NUMBER,
    "model.num_steps": POSITIVE_INT,
    "model.sample_steps": POSITIVE_INT,
    "model.base_channels": POSITIVE_INT,
    "model.eta": non_negative("0.0"),
    "model.schedule": one_of("linear", "cosine"),
    "model.prediction": one_of("eps", "v"),
    "model.sampler": one_of("ddim", "ancestral"),
    "model.loss": one_of("ns", "hinge", "wgan-gp"),
    "model.n_critic": positive_int_or_null("5"),
    "model.gp_weight": non_negative("10.0"),
    "model.betas": Rule(
        lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v)),
        "null or two numbers in [0, 1)",
        "[0.5,0.999]",
    ),
    "model.ema_decay": Rule(lambda v: v is None or (_is_number(v) and 0 <= v < 1), "a number in [0, 1) (or null for GAN: off)", "0.999"),
    "budget.max_epochs": Rule(lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer or -1", "10"),
    "budget.max_steps": Rule(lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer or -1 (no limit)", "-1"),
    "budget.eval_samples": POSITIVE_INT,
    "budget.grid_samples": POSITIVE_INT,
    "budget.guidance_samples": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer (0: no guidance sweep)", "500"),
    "eval.guidance_scales": Rule(lambda v: isinstance(v, list) and all(_is_number(w) and w >= 0 for w in v), "a list of numbers >= 0", "[0,1,2]"),
    "budget.curve_points": Rule(lambda v: _is_int(v) and v >= 0, "a non-negative integer (0: no quality curve)", "4"),
    "budget.curve_samples": Rule(lambda v: _is_int(v) and v > 1, "an integer > 1", "256"),
    "hardware.strategy": one_of("auto", "ddp"),
    "hardware.compile": Rule(lambda v: isinstance(v, bool), "true or false", "true"),
    "hardware.channels_last": Rule(lambda v: isinstance(v, bool), "true or false", "true"),
    "hardware.fused_optimizer": Rule(lambda v: isinstance(v, bool), "true or false", "true"),
    "hardware.precision": one_of("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"),
    "eval.batch_size": POSITIVE_INT,
    "eval.kid_subsets": POSITIVE_INT,
    "eval.kid_subset_size": Rule(lambda v: _is_int(v) and v > 1, "an integer > 1", "1000"),
    "eval.pr_k": POSITIVE_INT,
    "eval.memorisation_percentile": Rule(lambda v: _is_number(v) and 0 < v < 100, "a number in (0, 100)", "1.0"),
    "eval.extractors": Rule(
        lambda v: isinstance(v, list) and all(e in ("classifier", "inception") for e in v), "a list drawn from classifier, inception", "[classifier]"
    ),
    "budget.n_test": positive_int_or_null("1000"),
}


def group_options(group: str) -> list[str]:
    """The options of a config group: the names of its yaml files in conf/<group>/."""
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
    """Compose conf/config.yaml with `overrides` (as on the command line) and validate it.

    For tests and notebooks: `run(load_config(["model=ae", "output_dir=/tmp/x"]))`.
    Raises ConfigError for an unknown group option or an invalid value.
    """
    from hydra import compose, initialize_config_dir

    overrides = list(overrides)
    check_group_choices(overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Check every key of RULES present in cfg; raise ConfigError naming the first bad one."""
    for key, rule in RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        if not rule.check(value):
            raise ConfigError(f"{key}={value!r} is invalid: it must be {rule.want} (e.g. {key}={rule.example})")


def for_family(section: DictConfig, family: str) -> dict:
    """A config section (budget, hardware) as one family sees it: its keys updated by `families.<family>`.

    E.g. budget=fast gives DDPM 3 epochs where the others get 10; hardware=gpu keeps the
    likelihood families in float32. Returns a plain dict without the `families` key.
    """
    plain = OmegaConf.to_container(section, resolve=True)
    overrides = plain.pop("families", None) or {}
    plain.update(overrides.get(family, {}))
    return plain


_ABSENT = object()


def check_edit_classes(edit, num_classes: int) -> None:
    """Raise ConfigError unless `edit_classes` is null or two different classes of the data."""
    if edit is None:
        return
    edit = list(edit) if OmegaConf.is_config(edit) or isinstance(edit, (list, tuple)) else [edit]
    if len(edit) != 2 or edit[0] == edit[1] or not all(isinstance(c, int) and 0 <= c < num_classes for c in edit):
        raise ConfigError(f"edit_classes={edit} is invalid: it must be two different classes in 0..{num_classes - 1} "
                          "(e.g. edit_classes=[7,9]) or null")
