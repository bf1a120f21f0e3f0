"""The family registry: every family genzoo knows, with its traits, read from genzoo/conf/model/.

A family is one file `genzoo/conf/model/<name>.yaml`: its `_target_` (the LightningModule class)
and constructor arguments, and a `family:` block that is not passed to the constructor:

    family:
      likelihood: bound        # exact | bound | estimate | null: what its test likelihood is
      sampler: cheap           # cheap | costly: costly samplers score fewer samples (see budget)
      latent: encoder          # encoder | prior | null: what genzoo.evaluation.latent can do
      conditional: "..."       # its conditional form in words, or null (no model.conditional)
      notes_column: VAE        # the course notes' column it answers for (genzoo.report.course_notes), or null
      budget:                  # per-budget changes of genzoo/conf/budget/<name>.yaml for this family
        fast: {max_epochs: 3}
      data: {batch_size: 64}   # changes of the data config (any data set) for this family
      schema:                  # its model.* keys and what a valid value is (genzoo.config.RULE_KINDS)
        latent_dim: positive_int
        likelihood: [gaussian, bernoulli]   # a list: one of these

Everything else asks this module: the config's validation and budget rules, the
construction layer (genzoo.models.build), the report, the tests and .ci/run. It imports
neither torch nor Lightning, so `python -m genzoo --help` and the report stay quick.
Adding a family is adding its yaml (plus its module, test and guide page); nothing here
or elsewhere lists family names.
"""

from dataclasses import dataclass, field
from functools import cache

from omegaconf import OmegaConf

from genzoo.errors import ConfigError
from genzoo.paths import config_dir

LIKELIHOODS = ("exact", "bound", "estimate", None)
SAMPLERS = ("cheap", "costly")
LATENTS = ("encoder", "prior", None)


@dataclass(frozen=True)
class Family:
    """One family's facts, as its genzoo/conf/model/<name>.yaml states them.

    name: the config option (model=<name>) and metrics.json's "model" key.
    target: dotted path of its GenerativeModel subclass.
    likelihood: "exact" (an exact log-likelihood), "bound" (a lower bound: ELBO, VLB),
        "estimate" (neither: the EBM's, through an AIS estimate of log Z) or None; a family
        with one trains and is tested in float32 (genzoo.config.precision_for).
    sampler: "cheap" (one or a few net passes per sample) or "costly" (tens to thousands,
        sequential); costly families score fewer samples in their budgets.
    latent: "encoder" (codes of images and of the prior), "prior" (codes of the prior
        only) or None; GenerativeModel's latent methods exist exactly when it is not None.
    conditional: the class-conditional form in words, or None (no model.conditional).
    notes_column: the column of the course notes' comparison table the family answers for
        ("VAE", "GAN", "Autoregressive", "Diffusion"; genzoo.report.course_notes), or None.
    budget: {budget name: {key: value}}, this family's changes to each budget.
    data: {key: value}, this family's changes to the data config (any data set), e.g. the
        batch size its recipe trains with.
    schema: {model key: rule}, what a valid value of each of its model.* keys is.
    tiny: {model key: value}, changes that make its nets small enough for the family
        contract test (tests/test_family_contract.py) to train and sample in seconds.
    """

    name: str
    target: str
    likelihood: str | None
    sampler: str
    latent: str | None
    conditional: str | None
    notes_column: str | None = None
    budget: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    schema: dict = field(default_factory=dict)
    tiny: dict = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        """The class's name, e.g. "VAE"."""
        return self.target.rsplit(".", 1)[-1]

    def tiny_overrides(self) -> list[str]:
        """`tiny` as command-line overrides, e.g. ["model.base_channels=8", "model.channel_mults=[1,2]"]."""
        return [override(f"model.{k}", v) for k, v in self.tiny.items()]

    def model_class(self):
        """The family's GenerativeModel subclass (imports its module, and so torch)."""
        import importlib

        module, name = self.target.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)


def override(key: str, value) -> str:
    """A command-line override for a value: "key=[8,8]" for a list, "key=null" for None, else "key=<value>"."""
    if isinstance(value, (list, tuple)):
        return f"{key}=[" + ",".join(map(str, value)) + "]"
    return f"{key}={'null' if value is None else value}"


@cache
def registry() -> dict[str, Family]:
    """{name: Family} for every genzoo/conf/model/*.yaml, sorted by name.

    Raises ConfigError naming the file when a family's `family:` block is missing or a
    trait has a value outside its allowed set.
    """
    found = {}
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        traits = cfg.get("family")
        if not isinstance(traits, dict) or "_target_" not in cfg:
            raise ConfigError(f"{path} is not a family config: it needs _target_ and a family: block (see genzoo/families.py)")
        fam = Family(
            name=path.stem,
            target=cfg["_target_"],
            likelihood=traits.get("likelihood"),
            sampler=traits.get("sampler", "cheap"),
            latent=traits.get("latent"),
            conditional=traits.get("conditional"),
            notes_column=traits.get("notes_column"),
            budget=traits.get("budget") or {},
            data=traits.get("data") or {},
            schema=traits.get("schema") or {},
            tiny=traits.get("tiny") or {},
        )
        for trait, allowed in (("likelihood", LIKELIHOODS), ("sampler", SAMPLERS), ("latent", LATENTS)):
            if getattr(fam, trait) not in allowed:
                raise ConfigError(f"{path}: family.{trait}={getattr(fam, trait)!r} is invalid: it must be one of {allowed}")
        found[fam.name] = fam
    return found


def names() -> list[str]:
    """The family names, sorted: ["ae", "ddpm", ...]."""
    return list(registry())


def get(name: str) -> Family:
    """The family called `name`; raises ConfigError listing the known ones."""
    try:
        return registry()[name]
    except KeyError:
        raise ConfigError(f"unknown family '{name}': choose one of {', '.join(names())}") from None


def of_target(target: str) -> Family:
    """The family whose class is `target` (a dotted path, or a bare class name as older configs wrote it).

    Raises ConfigError when no family has that class.
    """
    for fam in registry().values():
        if target in (fam.target, fam.class_name) or target.rsplit(".", 1)[-1] == fam.class_name:
            return fam
    raise ConfigError(f"no family has the class {target}: known classes are {', '.join(f.target for f in registry().values())}")
