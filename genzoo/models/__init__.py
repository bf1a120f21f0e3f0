"""One LightningModule per family, all implementing GenerativeModel.

A family's class lives in its own module (genzoo/conf/model/<name>.yaml names it in `_target_`);
`genzoo.models.<ClassName>` also finds it through the family registry, so configs written
before classes were addressed by module path (`genzoo.models.VAE`) still load.
"""

from genzoo.models.base import GenerativeModel

__all__ = ["GenerativeModel"]


def __getattr__(name: str):
    from genzoo import families

    for fam in families.registry().values():
        if fam.class_name == name:
            return fam.model_class()
    raise AttributeError(f"module 'genzoo.models' has no attribute '{name}'")
