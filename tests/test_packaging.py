import tomllib
from pathlib import Path

from genzoo.paths import config_dir

REPO = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "genzoo").rglob("__init__.py")}
    assert found | {"genzoo.conf"} == listed


def test_config_dir_holds_every_group():
    root = config_dir()
    assert (root / "config.yaml").is_file()
    for group in ("model", "data", "hardware", "logger", "budget"):
        assert any((root / group).glob("*.yaml")), group
