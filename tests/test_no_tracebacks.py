"""User mistakes and closed pipes end every command of ours in one line, never a traceback
(issue 18, item 4): a reader that goes away (``mar-inspect x | head``), a pyproject.toml that
is not TOML (ours; doit reads the project's own before any dodo), ``--shard`` given to one
model."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HANDLER, run_cli_process, write_tree
from doit_helpers import doit, make_project

ARGS = ["--model-name", "m", "--model-path", "model", "--handler", "service", "-f"]


def closed_pipe() -> int:
    """The write end of a pipe whose reader has gone: every write to it fails (EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize("command,stream", [
    (["mar_tasks.cli.inspect", "m.mar"], "stdout"),
    (["mar_tasks.cli.inspect", "m.mar", "--json", "--verify"], "stdout"),
    (["mar_tasks", *ARGS], "stderr"),  # mar-archive's result line goes to stderr
])
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, command, stream: str):
    write_tree(tmp_path / "model", {"service.py": HANDLER})
    assert run_cli_process(ARGS, tmp_path).returncode == 0
    pipe = closed_pipe()
    try:
        other = {"stdout": "stderr", "stderr": "stdout"}[stream]
        r = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, text=True,
                           **{stream: pipe, other: subprocess.PIPE})
    finally:
        os.close(pipe)
    left = r.stderr if stream == "stdout" else r.stdout
    assert r.returncode == 128 + signal.SIGPIPE and left == "", left  # as if killed by SIGPIPE


def test_a_closed_pipe_after_part_of_the_output(tmp_path: Path):
    """`mar-inspect big.mar | head -1`: the reader goes away after the first line."""
    write_tree(tmp_path / "model", {"service.py": HANDLER,
                                    **{f"f{i:05}.txt": "x" for i in range(3000)}})
    assert run_cli_process(ARGS, tmp_path).returncode == 0
    p = subprocess.Popen([sys.executable, "-m", "mar_tasks.cli.inspect", "m.mar"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().startswith(b"m.mar")
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 128 + signal.SIGPIPE and err == "", err


@pytest.mark.parametrize("command", [["archive"], ["list"], ["archive:m0"]])
def test_a_models_file_that_is_not_toml_is_one_line_under_doit(tmp_path: Path, command):
    """Our own reader of a pyproject: one line with file, line and column. (The project's own
    pyproject.toml is read by doit first, before any dodo: docs/doit.md says what doit prints.)"""
    project = make_project(tmp_path / "p", models=1)
    (project / "models.toml").write_text('[tool.mar_tasks.models.a]\nhandler = "x\nmodel-path = "m"\n')
    (project / "dodo.py").write_text(
        "from mar_tasks import project_tasks\n\n"
        "def task_archive():\n    yield from project_tasks('models.toml')\n")
    r = doit(project, *command, check=False)
    assert r.rc != 0 and "Traceback" not in r.out, r.out
    assert r.out.strip().splitlines()[-1].endswith(
        "mar_tasks: models.toml is not valid TOML (Illegal character '\\n' "
        "(at line 2, column 13)); fix it"), r.out
    assert len(r.out.strip().splitlines()) == 1, r.out


@pytest.mark.parametrize("task", ["archive:m0", "publish:m0"])
def test_shard_given_to_one_model_is_one_clear_line(tmp_path: Path, task: str):
    project = make_project(tmp_path / "p", models=2, extra_toml='[tool.mar_tasks.publish]\nurl = "s3://b/p"\n')
    (project / "dodo.py").write_text("from mar_tasks import task_archive, task_publish  # noqa: F401\n")
    r = doit(project, task, "--shard", "1/2", check=False)
    assert r.rc == 3 and "Traceback" not in r.out, r.out
    assert r.out.strip().splitlines() == [
        "ERROR: mar_tasks: --shard 1/2 splits the models of `doit archive` or `doit publish`; a task "
        "named with :NAME is one model already, so drop --shard (or drop :NAME)"], r.out
    assert not (project / "store").exists()
