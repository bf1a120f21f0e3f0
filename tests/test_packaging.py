from pathlib import Path

from genzoo.paths import config_dir

REPO = Path(__file__).resolve().parent.parent


def test_no_import_cycle_among_genzoo_modules():
    """Imports between genzoo's modules (at module level or inside functions) form no cycle."""
    import ast

    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in (REPO / "genzoo").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:  # from P import m: the submodule P.m if there is one, else P
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps

    def cycle_from(start, node, seen):
        for dep in graph[node]:
            if dep == start:
                return [node, dep]
            if dep not in seen:
                seen.add(dep)
                if path := cycle_from(start, dep, seen):
                    return [node, *path]
        return None

    cycles = [c for c in (cycle_from(m, m, set()) for m in graph) if c]
    assert not cycles, cycles[0]


def test_report_and_metrics_stay_leaves():
    """Nothing outside report/ imports it; models/ does not import metrics/ (module-level imports)."""
    import re

    for path in (REPO / "genzoo").rglob("*.py"):
        text = path.read_text()
        if "report" not in path.parts:
            assert not re.search(r"^\s*from genzoo\.report", text, re.M), path
        if "models" in path.parts:
            assert not re.search(r"^\s*from genzoo\.metrics", text, re.M), path


def test_config_dir_holds_every_group():
    root = config_dir()
    assert (root / "config.yaml").is_file()
    for group in ("model", "data", "hardware", "logger", "budget"):
        assert any((root / group).glob("*.yaml")), group
