"""The shared MD5 record: digests are right, prefetched in the background, never stale."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doit_helpers import make_project, saved_states
from mar_tasks import content_hashes


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def test_prefetched_digest_is_the_files_md5(tmp_path: Path):
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(3 << 20))
    content_hashes.prefetch([(str(f), f.stat().st_size)])
    assert _key(f) in content_hashes._pending  # hashing started in the background
    assert content_hashes.file_md5(str(f)) == _md5(f)
    assert _key(f) not in content_hashes._pending and _key(f) in content_hashes._record


def test_file_changed_after_prefetch_is_hashed_again(tmp_path: Path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * (2 << 20))
    content_hashes.prefetch([(str(f), 2 << 20)])
    assert _key(f) in content_hashes._pending
    f.write_bytes(b"b" * (2 << 20))  # same size, new content and mtime
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert content_hashes.file_md5(str(f)) == _md5(f)


def test_small_files_are_left_to_doit(tmp_path: Path):
    f = tmp_path / "small.txt"
    f.write_bytes(b"x" * 1000)
    content_hashes.prefetch([(str(f), 1000)])
    assert _key(f) not in content_hashes._pending
    assert content_hashes.file_md5(str(f)) == _md5(f)


def test_missing_files_are_skipped_by_prefetch(tmp_path: Path):
    content_hashes.prefetch([(str(tmp_path / "gone"), 2 << 20)])
    with pytest.raises(FileNotFoundError):
        content_hashes.file_md5(str(tmp_path / "gone"))


def _saved_states(project: Path) -> dict:
    return {p: state for t in ("archive:m0", "archive:m1", "archive:m2")
            for p, state in saved_states(project, t).items()}


@pytest.mark.parametrize("args", [[], ["-n", "2", "-P", "process"], ["-n", "2", "-P", "thread"]])
def test_first_build_prefetches_and_saves_true_digests(tmp_path: Path, args):
    project = make_project(tmp_path / "proj")
    (project / "zoo/m1/weights.bin").write_bytes(os.urandom(5 << 20))
    script = textwrap.dedent(f"""
        import sys, threading
        from doit.cmd_base import ModuleTaskLoader
        from doit.doit_cmd import DoitMain
        from mar_tasks import task_archive
        rc = DoitMain(ModuleTaskLoader({{"task_archive": task_archive}})).run({args + ["archive"]!r})
        print("md5 threads:", sum(t.name == "mar_tasks-md5" for t in threading.enumerate()))
        sys.exit(rc)
        """)
    r = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "md5 threads: 0" not in r.stdout, r.stdout  # no state yet: hashes were prefetched
    states = _saved_states(project)
    assert len(states) == 9
    for path, (mtime, size, digest) in states.items():
        assert digest == _md5(project / path), path

    # A resized input is prefetched too, and its new digest saved.
    (project / "zoo/m1/weights.bin").write_bytes(b"smaller")
    r = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    states = _saved_states(project)
    assert states["zoo/m1/weights.bin"][2] == hashlib.md5(b"smaller").hexdigest()
