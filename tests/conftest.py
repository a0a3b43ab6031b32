"""Shared helpers: real model folders in tmp_path and the real CLI."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from mar_tasks.cli import archive as cli
HANDLER = "def handle(data, context):\n    return data\n"


def write_tree(root: Path, files: Dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A small seed-style model folder."""
    return write_tree(tmp_path / "model", {
        "service.py": HANDLER,
        "model-symbol.json": '{"nodes": []}',
        "model-0000.params": random.Random(5).randbytes(50_000) + bytes(3_000_000),
        "signature.json": '{"inputs": []}',
        "assets/synset.txt": "cat\ndog\n",
    })


def run_cli(args: List[str], cwd: Path, capsys=None) -> int:
    """Run mar-archive in-process from `cwd`."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return cli.main(args)
    finally:
        os.chdir(old)


def run_cli_process(args: List[str], cwd: Path, module: str = "mar_tasks", **kw) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess (exit codes, stderr, no traceback)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, **kw)


def zip_names(path: Path) -> List[str]:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None  # every CRC checked
        return z.namelist()


def all_files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server on loopback for the whole session (tests/s3_server.py)."""
    from s3_server import start
    yield from start(tmp_path_factory.mktemp("seaweedfs"))
