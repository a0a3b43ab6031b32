"""The package's layers (docs/architecture.md) and what a no-op `doit archive` imports."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Set

from conftest import HANDLER, write_tree

PKG = Path(__file__).resolve().parent.parent / "mar_tasks"

# Lowest first: a module may import its own layer and the ones before it, never one after.
LAYERS = [
    {"mar_tasks.errors", "mar_tasks.version", "mar_tasks.atomic", "mar_tasks.regular_files",
     "mar_tasks.display", "mar_tasks.allocator", "mar_tasks.progress"},
    "mar_tasks.plan",
    "mar_tasks.formats",
    {"mar_tasks.engine"},
    "mar_tasks.store",
    "mar_tasks.tasks",
    "mar_tasks.cli",
    {"mar_tasks", "mar_tasks.__main__"},
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if module in layer if isinstance(layer, set) else module.startswith(layer + ".") or module == layer:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def package_imports() -> Dict[str, Set[str]]:
    """Every mar_tasks module -> the mar_tasks modules it imports (anywhere in its body)."""
    found: Dict[str, Set[str]] = {}
    for path in PKG.rglob("*.py"):
        name = module_name(path)
        deps: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mar_tasks"):
                assert node.level == 0, f"{name}: relative import (the package imports absolutely)"
                for alias in node.names:  # `from mar_tasks.tasks import run_summary` is a module
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                             else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("mar_tasks")}
        found[name] = deps - {name}
    return found


def test_no_module_imports_a_layer_above_its_own():
    wrong = [f"{m} imports {d}" for m, deps in package_imports().items() for d in deps
             if d != "mar_tasks" and layer_of(d) > layer_of(m)]
    assert wrong == []


def test_no_import_cycles():
    graph = package_imports()
    state: Dict[str, int] = {}

    def visit(node: str, path: list) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            if dep == "mar_tasks":
                continue
            assert state.get(dep) != 1, " -> ".join(path + [node, dep])
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_the_top_of_the_package_stays_small_and_subpackage_inits_stay_empty():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 12, top
    subs = [p for p in PKG.iterdir() if (p / "__init__.py").is_file()]
    assert len(subs) >= 4
    for sub in subs:  # importing one module of a layer must not import the whole layer
        assert (sub / "__init__.py").read_text().strip() == "", sub


NOOP_IMPORTS = {
    "mar_tasks", "mar_tasks.errors", "mar_tasks.version", "mar_tasks.regular_files",
    "mar_tasks.plan", "mar_tasks.plan.choices", "mar_tasks.plan.exclusions",
    "mar_tasks.plan.output_guard", "mar_tasks.plan.stat_checks",
    "mar_tasks.store", "mar_tasks.store.settings",
    "mar_tasks.tasks", "mar_tasks.tasks.archive_tasks", "mar_tasks.tasks.doit_private",
    "mar_tasks.tasks.content_hashes", "mar_tasks.tasks.fingerprints", "mar_tasks.tasks.reuse_grant",
    "mar_tasks.tasks.project_config", "mar_tasks.tasks.project_lock",
    "mar_tasks.tasks.remembered_listings", "mar_tasks.tasks.uptodate",
}


def test_a_no_op_doit_archive_imports_only_what_it_needs(tmp_path: Path):
    """A no-op loads the task layer and the config it reads; never the writers, the
    readers, the selection walk or the store (each would cost every run its import)."""
    for i in range(2):
        write_tree(tmp_path / "zoo" / f"m{i}", {"service.py": HANDLER, "w.bin": b"w" * 100})
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.mar_tasks.defaults]
        export-path = "store"
        [tool.mar_tasks.model-dirs.zoo]
        handler = "service:handle"
        """))
    (tmp_path / "dodo.py").write_text("from mar_tasks import task_archive  # noqa: F401\n")
    time.sleep(2.1)  # past the racily-clean margin, so the listings are remembered
    run = textwrap.dedent("""
        import sys
        from doit.cmd_base import ModuleTaskLoader
        from doit.doit_cmd import DoitMain
        import dodo
        rc = DoitMain(ModuleTaskLoader(dodo)).run(["archive"])
        print("RC", rc)
        print("MODULES", " ".join(sorted(m for m in sys.modules if m.startswith("mar_tasks"))))
        """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    outs = [subprocess.run([sys.executable, "-c", run], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=120) for _ in range(3)]
    assert all("RC 0" in r.stdout for r in outs), [r.stdout + r.stderr for r in outs]
    assert "archive:m0" in outs[0].stdout and "-- archive:m0" in outs[2].stdout  # built, then up to date
    loaded = set(outs[2].stdout.split("MODULES ", 1)[1].split())
    assert loaded == NOOP_IMPORTS, (sorted(loaded - NOOP_IMPORTS), sorted(NOOP_IMPORTS - loaded))
