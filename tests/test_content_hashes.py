"""Our MD5 record, and a doit run in the user's own process that changes nothing there:
doit's functions untouched, no thread left running, no fork hook, no malloc setting."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from doit_helpers import make_project, saved_states
from mar_tasks.tasks import content_hashes
def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_digest_is_the_files_md5_and_remembered_only_when_not_racy(tmp_path: Path):
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(3 << 20))
    assert content_hashes.file_md5(str(f)) == _md5(f)
    st = f.stat()
    key = (str(f), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    # just written: its ctime is within the racy window, so it is not remembered
    assert key not in content_hashes._record
    time.sleep(content_hashes.RACY_NS / 1e9 + 0.2)  # (a ctime cannot be set back)
    assert content_hashes.file_md5(str(f)) == _md5(f)
    assert key in content_hashes._record


def test_an_edit_that_puts_the_mtime_back_is_hashed_again(tmp_path: Path):
    """A remembered digest is keyed by the ctime too, which `touch -r` cannot put back."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    time.sleep(content_hashes.RACY_NS / 1e9 + 0.2)
    first = content_hashes.file_md5(str(f))
    st = f.stat()
    assert (str(f), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) in content_hashes._record
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_hashes.file_md5(str(f)) == _md5(f) != first


def test_rewritten_file_with_the_same_key_is_hashed_again(tmp_path: Path):
    """Same size, mtime set back to the remembered one: a remembered digest would be stale;
    a fresh file (racy) is never remembered, so the new content is seen."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    first = content_hashes.file_md5(str(f))
    st = f.stat()
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_hashes.file_md5(str(f)) == _md5(f) != first


SCRIPT = textwrap.dedent("""
    import os, sys, threading
    import doit.dependency as dep
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain
    original = dep.get_file_md5
    from mar_tasks import project_tasks
    from mar_tasks import allocator

    def task_archive():
        yield from project_tasks()

    threads_before = set(threading.enumerate())
    rc = DoitMain(ModuleTaskLoader({"task_archive": task_archive})).run(ARGS + ["archive"])
    for t in threading.enumerate():  # doit's -P process queue feeder ends once its queue is
        if t not in threads_before:  # flushed, a moment after the run: wait for it (bounded)
            t.join(timeout=5)
    left = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    with open("report.txt", "w") as f:  # (doit may leave its own stdout capture in place)
        print("rc", rc, file=f)
        print("patched", dep.get_file_md5 is not original, file=f)
        print("threads", left, file=f)
        print("malloc", allocator._applied, file=f)
    """)


@pytest.mark.parametrize("args", [[], ["-n", "2", "-P", "process"], ["-n", "2", "-P", "thread"]])
def test_in_process_doit_run_leaves_nothing_behind(tmp_path: Path, args):
    project = make_project(tmp_path / "proj")
    (project / "zoo/m1/weights.bin").write_bytes(os.urandom(5 << 20))
    script = tmp_path / "run_doit.py"  # a file: doit reads its task creators' source lines
    script.write_text(SCRIPT.replace("ARGS", repr(args)))
    r = subprocess.run([sys.executable, str(script)], cwd=project, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    report = (project / "report.txt").read_text()
    assert "rc 0" in report, report + r.stdout + r.stderr
    assert "patched False" in report            # doit's own hashing is doit's
    assert "threads []" in report, report       # no thread of ours outlives the run
    assert "malloc None" in report              # malloc left as the user set it
    # doit's saved digests are the files' real MD5s
    for task in ("archive:m0", "archive:m1", "archive:m2"):
        for path, (_, _, digest) in saved_states(project, task).items():
            assert digest == _md5(project / path), path


def test_no_fork_hook_is_registered_at_import():
    code = ("import os; calls = []; os.register_at_fork(before=lambda: calls.append(1));"
            "import mar_tasks, mar_tasks.tasks.archive_tasks, mar_tasks.engine, mar_tasks.tasks.content_hashes;"
            "pid = os.fork()\nif pid == 0: os._exit(0)\nos.waitpid(pid, 0); print(len(calls))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stdout + r.stderr


def test_deflate_threads_follow_cpu_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            "from mar_tasks.formats.deflate import default_workers; print(default_workers())")
    env = {k: v for k, v in os.environ.items() if k != "MAR_TASKS_THREADS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.strip() == "1", r.stdout + r.stderr
