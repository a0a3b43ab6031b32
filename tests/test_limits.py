"""A model of 100,000 small files: archives correctly, and its doit task loads quickly."""
from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import HANDLER
from doit_helpers import DODO

pytestmark = pytest.mark.slow
N = 100_000


def test_hundred_thousand_files(tmp_path: Path):
    model = tmp_path / "proj/model"
    for d in range(100):
        sub = model / f"d{d:02d}"
        sub.mkdir(parents=True)
        for i in range(N // 100):
            (sub / f"f{i:04d}.txt").write_bytes(b"%d %d\n" % (d, i))
    (model / "service.py").write_text(HANDLER)
    proj = tmp_path / "proj"
    (proj / "dodo.py").write_text(DODO)
    (proj / "pyproject.toml").write_text('[tool.mar_tasks.models.m]\nmodel-path = "model"\n'
                                         'handler = "service"\nexport-path = "out"\n')
    code = ("import time; t=time.perf_counter(); from mar_tasks import project_tasks; "
            "tasks=[t for t in project_tasks() if t['name']]; print(time.perf_counter()-t, len(tasks[0]['file_dep']))")
    load = subprocess.run([sys.executable, "-c", code], cwd=proj, capture_output=True, text=True, check=True)
    load_s, deps = load.stdout.split()
    assert int(deps) == N + 1
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "doit", "archive"], cwd=proj, capture_output=True, text=True)
    build_s = time.perf_counter() - t
    assert r.returncode == 0, r.stdout + r.stderr
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "doit", "archive"], cwd=proj, capture_output=True, text=True)
    noop_s = time.perf_counter() - t
    assert "-- archive:m" in r.stdout
    with zipfile.ZipFile(proj / "out/m.mar") as z:
        assert len(z.infolist()) == N + 2
        assert z.read("d42/f0999.txt") == b"42 999\n"
    from mar_tasks import verify_archive
    assert verify_archive(proj / "out/m.mar") == []   # within --verify's limits (issue 19)
    print(f"\n100k files: task load {float(load_s):.2f} s, first doit archive {build_s:.2f} s, "
          f"no-op doit archive {noop_s:.2f} s")
