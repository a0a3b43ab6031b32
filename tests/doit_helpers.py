"""Running real doit on real projects in tmp_path."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Set

from conftest import HANDLER, write_tree

DODO = "from mar_tasks import task_archive  # noqa: F401\n"


@dataclass
class Run:
    rc: int
    built: Set[str]
    skipped: Set[str]
    out: str


def doit(project: Path, *args: str, env: Dict[str, str] | None = None, check: bool = True) -> Run:
    """Run doit; unless `check` is False the run must succeed. (A doit that cannot even load
    its tasks builds nothing: "nothing rebuilt" means nothing without its exit status.)"""
    r = subprocess.run([sys.executable, "-m", "doit", *args], cwd=project, capture_output=True,
                       text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    built = set(re.findall(r"^\.  archive:(\S+)", out, re.M))
    skipped = set(re.findall(r"^-- archive:(\S+)", out, re.M))
    if check:
        assert r.returncode == 0, f"doit {' '.join(args)} exited {r.returncode}:\n{out}"
    return Run(r.returncode, built, skipped, out)


def doit_spawned(project: Path, *args: str) -> subprocess.CompletedProcess:
    """doit run in-process by a program whose multiprocessing start method is spawn, so
    each `-P process` worker imports the dodo again and gets its tasks by pickle."""
    code = textwrap.dedent(f"""
        import multiprocessing, sys
        multiprocessing.set_start_method("spawn", force=True)
        from doit.doit_cmd import DoitMain
        from doit.cmd_base import ModuleTaskLoader
        import dodo
        sys.exit(DoitMain(ModuleTaskLoader(dodo)).run({list(args)!r}))
        """)
    return subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(project)}, timeout=300)


def make_project(root: Path, models: int = 3, extra_toml: str = "") -> Path:
    """`models` model folders under zoo/, all declared by one model-dirs table."""
    for i in range(models):
        write_tree(root / "zoo" / f"m{i}", {
            "service.py": HANDLER, "weights.bin": bytes([i]) * 5000, "labels/l.txt": f"{i}\n",
        })
    (root / "dodo.py").write_text(DODO)
    (root / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "demo"
        version = "0"

        [tool.mar_tasks.defaults]
        export-path = "store"

        [tool.mar_tasks.model-dirs.zoo]
        handler = "service:handle"
        """) + extra_toml)
    return root


def saved_states(project: Path, task: str) -> Dict[str, tuple]:
    """doit's saved (mtime, size, md5) of each file_dep of `task`, read from .doit.db."""
    from doit.dependency import DbmDB, Dependency
    dep = Dependency(DbmDB, str(project / ".doit.db"))
    try:
        return {p: tuple(dep._get(task, p)) for p in dep._get(task, "deps:")}
    finally:
        dep.close()
