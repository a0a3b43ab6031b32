"""The progress bar shows on a real terminal (a pty) for large inputs, never on a pipe."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from conftest import HANDLER, write_tree

ARGS = ["--model-name", "big", "--model-path", "model", "--handler", "service"]


def big_model(tmp_path: Path) -> None:
    write_tree(tmp_path / "model", {"service.py": HANDLER})
    with open(tmp_path / "model/weights.bin", "wb") as f:
        f.truncate(150_000_000)  # sparse: over the 100 MB threshold


def run_on_pty(args, cwd: Path, module: str = "mar_tasks") -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stderr=slave,
                            stdout=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    return out.decode(errors="replace")


def test_bar_on_a_terminal(tmp_path: Path):
    big_model(tmp_path)
    out = run_on_pty(ARGS, tmp_path)
    assert "100.0%" in out and "MB/s" in out and "[####" in out


def test_quiet_silences_the_bar(tmp_path: Path):
    big_model(tmp_path)
    assert "%" not in run_on_pty(ARGS + ["-q", "-f"], tmp_path)


def test_no_bar_when_stderr_is_a_pipe(tmp_path: Path):
    big_model(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mar_tasks", *ARGS], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "%" not in r.stderr and r.stderr.count("\n") == 1


def doit_project(tmp_path: Path) -> None:
    big_model(tmp_path)
    (tmp_path / "dodo.py").write_text("from mar_tasks import archive_task\n\n"
                                      "def task_models():\n"
                                      "    yield archive_task('big', 'service', 'model')\n")


def test_doit_shows_the_same_bar_on_a_terminal(tmp_path: Path):
    doit_project(tmp_path)
    out = run_on_pty(["models"], tmp_path, module="doit")
    assert "big [####" in out and "100.0%" in out and "MB/s" in out, out


def test_doit_shows_no_bar_when_stderr_is_a_pipe(tmp_path: Path):
    doit_project(tmp_path)
    r = subprocess.run([sys.executable, "-m", "doit", "models"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "big.mar").is_file(), r.stdout + r.stderr
    assert "%" not in r.stderr and "%" not in r.stdout
