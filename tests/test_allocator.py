"""Chunk buffers are reused: a build does not fault in fresh pages for every chunk."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import HANDLER, write_tree

SCRIPT = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from mar_tasks import ArchiveOptions, build_archive
    opts = ArchiveOptions(model_name="m", handler="h", model_path=Path(sys.argv[1]),
                          export_path=Path(sys.argv[2]), force=True).resolved(Path.cwd())
    build_archive(opts, threads=int(sys.argv[3]), tune_malloc=True)  # warms up the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    build_archive(opts, threads=int(sys.argv[3]), tune_malloc=True)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)


def _faults(tmp_path: Path, threads: int, env: dict) -> int:
    weights = b"".join(os.urandom(1 << 10) + bytes(1 << 10) for _ in range(8 << 10))  # 16 MiB, deflates
    model = write_tree(tmp_path / "model", {"h.py": HANDLER, "w.bin": weights})
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(model), str(tmp_path / "out"), str(threads)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
@pytest.mark.parametrize("threads", [1, 2])
def test_second_build_reuses_buffers(tmp_path: Path, threads: int):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    assert _faults(tmp_path, threads, env) < 1000  # measured: 1-500 tuned, 1,478-4,434 not
