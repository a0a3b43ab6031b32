"""Faults: kills at random moments, concurrent builds, inputs changing mid-build, full disks.

These are real processes, signals and file systems; they are marked slow but run in CI.
"""
from __future__ import annotations

import hashlib
import dataclasses
import os
import pty
import random
import signal
import subprocess
import sys
import termios
import threading
import time
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from conftest import HANDLER, write_tree
from doit_helpers import DODO, doit
from mar_tasks import ArchiveError, ArchiveOptions, atomic, build_archive
from mar_tasks.progress import SHOW_FROM

pytestmark = pytest.mark.slow
KILL_TRIALS = 20


def big_model(root: Path) -> Path:
    """~30 MB: incompressible, compressible and text parts, so every writer path runs."""
    rng = random.Random(7)
    write_tree(root, {
        "service.py": HANDLER,
        "random.bin": rng.randbytes(10_000_000),
        "weights.bin": bytes(rng.getrandbits(4) for _ in range(200_000)) * 80,
        "vocab.txt": "".join(f"tok{i}\n" for i in range(100_000)),
        # many entries: writing (or carrying over) takes long enough for kills to land in it
        **{f"parts/p{i}.txt": f"part {i}\n" * (1000 + i) for i in range(600)},
    })
    return root


def holdable(model: Path) -> Path:
    """Make `model` large enough for the progress bar (a sparse file: no disk, fast to
    deflate), so that a build of it can be held on a stopped terminal (:class:`HeldTerminal`)."""
    with open(model / "zeros.bin", "wb") as f:
        f.truncate(SHOW_FROM)
    return model


class HeldTerminal:
    """A terminal (pty) whose output is stopped, as Ctrl-S stops one (XOFF, IXON set).

    A build whose stderr is this terminal shows its progress bar there, and its first bar
    update comes once the archive's temporary holds its first entry: from then on the build
    is blocked in that write, mid-archive, until :meth:`let_go` (XON). Interrupting it then
    lands mid-write every time, where a signal timed by the clock may come too early or too
    late. It cannot finish while held: the bar's last update comes before the output is
    published.
    """

    def __enter__(self) -> "HeldTerminal":
        self.master, self.slave = pty.openpty()
        attrs = termios.tcgetattr(self.slave)
        attrs[0] |= termios.IXON
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        os.write(self.master, b"\x13")  # XOFF: the terminal's output stops
        return self

    def start(self, cmd: List[str], cwd: Path) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=self.slave,
                                start_new_session=True)

    def let_go(self) -> None:
        os.write(self.master, b"\x11")  # XON; then read what it writes, so it never blocks again
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while os.read(self.master, 65536):
                pass
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        os.close(self.slave)
        os.close(self.master)


def wait_until_writing(proc: subprocess.Popen, target: Path, timeout: float = 120) -> None:
    """Wait until the held build has begun its output: a temporary beside `target`, or (if
    the build wrote in place, which the tests must catch) `target` itself changed."""
    before = _identity(target)
    deadline = time.monotonic() + timeout
    while not (target.parent.exists() and temps(target.parent)) and _identity(target) == before:
        assert proc.poll() is None, "the build ended on a stopped terminal: it showed no progress bar"
        assert time.monotonic() < deadline, "the held build never began writing its output"
        time.sleep(0.002)


def _identity(path: Path) -> Optional[Tuple[int, int, int]]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def flip_content(model: Path, version: int, name: str = "weights.bin") -> None:
    with open(model / name, "r+b") as f:
        f.write(version.to_bytes(4, "little"))


def temps(folder: Path) -> List[str]:
    return [n for n in os.listdir(folder) if ".mar_tasks-" in n]


def sha(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def cli(model: Path, out: Path, *extra: str) -> List[str]:
    return [sys.executable, "-m", "mar_tasks", "--model-name", "m", "--model-path", str(model),
            "--handler", "service", "--export-path", str(out), "-f", "-q", *extra]


def start(cmd: List[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_after(proc: subprocess.Popen, delay: float) -> None:
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def kill_while_writing(proc: subprocess.Popen, folder: Path, delay: float) -> None:
    """Kill `delay` s after the build's temporary appears (fast rebuilds write for a few ms,
    which a kill aimed by the clock alone rarely hits)."""
    while proc.poll() is None and not (folder.exists() and temps(folder)):
        time.sleep(0.0005)
    kill_after(proc, delay)


def expected_bytes(tmp_path: Path, model: Path, version: int, flip=flip_content) -> str:
    """The archive a clean, uninterrupted build gives for this content version."""
    flip(model, version)
    ref = tmp_path / f"ref{version}"
    subprocess.run(cli(model, ref), check=True)
    return sha(ref / "m.mar")


def run_kill_trials(tmp_path: Path, model: Path, target: Path, build_cmd, cwd: Path,
                    flip=flip_content) -> int:
    """Kill builds at random moments; `flip` makes the change each build follows."""
    expected = {v: expected_bytes(tmp_path, model, v, flip) for v in (0, 1)}
    flip(model, 1)
    subprocess.run(build_cmd, cwd=cwd, check=True, capture_output=True)
    durations = []  # rebuilds after a content change, like the trials: they aim the kills
    for version in (0, 1, 0):
        flip(model, version)
        t = time.perf_counter()
        subprocess.run(build_cmd, cwd=cwd, check=True, capture_output=True)
        durations.append(time.perf_counter() - t)
    duration = sorted(durations)[1]
    assert sha(target) == expected[0]
    rng = random.Random(11)
    survived = torn_temps = 0
    shown_bar = [c for c in build_cmd if c != "-q"]
    for trial in range(KILL_TRIALS):
        prior = sha(target)
        version = (trial + 1) % 2
        flip(model, version)
        if trial % 4 == 3:  # 5 of 20: killed mid-write for certain (see HeldTerminal)
            with HeldTerminal() as terminal:
                proc = terminal.start(shown_bar, cwd)
                wait_until_writing(proc, target)
                kill_after(proc, 0)
            assert temps(target.parent), f"trial {trial}: a build killed mid-write left no temporary"
        elif trial % 2:  # fast rebuilds write for a few ms: aim from the moment writing starts
            kill_while_writing(start(build_cmd, cwd), target.parent, rng.uniform(0, 0.04) * duration)
        else:  # Start-up is a large share of a build: aim the kills mostly at the writing part.
            kill_after(start(build_cmd, cwd), rng.uniform(0.5, 1.05) * duration)
        torn_temps += bool(target.parent.exists() and temps(target.parent))  # killed mid-write
        # Never torn: the previous complete archive, the new complete one, or nothing.
        assert sha(target) in (prior, expected[version], None)
        if target.exists():
            with zipfile.ZipFile(target) as z:
                assert z.testzip() is None
        survived += 1
        r = subprocess.run(build_cmd, cwd=cwd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert sha(target) == expected[version], f"trial {trial}: rebuild is not byte-identical"
        assert temps(target.parent) == []
    print(f"kills: {survived}/{KILL_TRIALS} left a complete archive; {torn_temps} hit mid-write")
    # The trials really interrupt writes, not just start-up (5 of them by construction).
    assert torn_temps >= 5, f"{torn_temps} of {KILL_TRIALS} kills hit mid-write; builds take {durations}"
    return survived


def test_cli_killed_at_random_moments(tmp_path: Path):
    model = holdable(big_model(tmp_path / "model"))
    out = tmp_path / "out"
    assert run_kill_trials(tmp_path, model, out / "m.mar", cli(model, out), tmp_path) == KILL_TRIALS


@pytest.mark.parametrize("changed", ["weights.bin", "vocab.txt"])
def test_doit_killed_at_random_moments(tmp_path: Path, changed: str):
    """Each rebuild carries the unchanged entries over from the archive it replaces (the
    vocab.txt case: all but one small entry), and a kill anywhere leaves that archive whole."""
    proj = tmp_path / "proj"
    model = holdable(big_model(proj / "model"))
    (proj / "dodo.py").write_text(DODO)
    (proj / "pyproject.toml").write_text(
        '[tool.mar_tasks.models.m]\nmodel-path = "model"\nhandler = "service"\nexport-path = "out"\n')
    cmd = [sys.executable, "-m", "doit", "archive"]
    flip = lambda model, version: flip_content(model, version, changed)  # noqa: E731
    assert run_kill_trials(tmp_path, model, proj / "out/m.mar", cmd, proj, flip) == KILL_TRIALS


def test_two_cli_builds_of_one_target_at_once(tmp_path: Path):
    model = big_model(tmp_path / "model")
    good = expected_bytes(tmp_path, model, 3)
    out = tmp_path / "out"
    for _ in range(5):
        procs = [start(cli(model, out), tmp_path) for _ in range(2)]
        assert [p.wait() for p in procs] == [0, 0]
        assert sha(out / "m.mar") == good and temps(out) == []


def test_two_doit_processes_share_a_project(tmp_path: Path):
    proj = tmp_path / "proj"
    model = big_model(proj / "zoo/m")
    write_tree(proj / "zoo/n", {"service.py": HANDLER, "w.bin": "n"})
    (proj / "dodo.py").write_text(DODO)
    (proj / "pyproject.toml").write_text(
        '[tool.mar_tasks.model-dirs.zoo]\nhandler = "service"\nexport-path = "out"\n')
    good = expected_bytes(tmp_path, model, 0)
    flip_content(model, 0)
    procs = [start([sys.executable, "-m", "doit", "archive"], proj) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]  # both runs succeed (one waits for the other)
    assert sha(proj / "out/m.mar") == good and temps(proj / "out") == []
    with zipfile.ZipFile(proj / "out/n.mar") as z:
        assert z.testzip() is None
    r = doit(proj, "archive")  # the shared state is still usable afterwards
    assert r.rc == 0, r.out


def test_same_model_name_in_two_folders_at_once_does_not_mix(tmp_path: Path):
    a = big_model(tmp_path / "a")
    write_tree(tmp_path / "b", {"service.py": HANDLER, "only_in_b.txt": "b"})
    procs = [start(cli(a, tmp_path / "outa"), tmp_path), start(cli(tmp_path / "b", tmp_path / "outb"), tmp_path)]
    assert [p.wait() for p in procs] == [0, 0]
    with zipfile.ZipFile(tmp_path / "outa/m.mar") as z:
        assert "only_in_b.txt" not in z.namelist() and "random.bin" in z.namelist()
    with zipfile.ZipFile(tmp_path / "outb/m.mar") as z:
        assert sorted(z.namelist()) == ["MAR-INF/MANIFEST.json", "only_in_b.txt", "service.py"]


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive", "zip-store"])
@pytest.mark.parametrize("change", ["rewrite", "grow", "shrink", "delete"])
def test_input_changed_while_archiving_fails_cleanly(tmp_path: Path, fmt: str, change: str):
    model = big_model(tmp_path / "model")
    opts = ArchiveOptions(model_name="m", handler="service", model_path=Path("model"),
                          archive_format=fmt, export_path=Path("out")).resolved(tmp_path)
    old = build_archive(opts).path
    before = sha(old) if old.is_file() else sorted(os.listdir(old))

    def mutate_on_first_chunk(total: int):
        done = []

        def tick(n: int) -> None:
            if not done:
                done.append(n)
                victim = model / "weights.bin"
                if change == "delete":
                    victim.unlink()
                    return
                with open(victim, "ab" if change == "grow" else "r+b") as f:
                    if change == "shrink":
                        f.truncate(victim.stat().st_size // 2)
                    else:
                        f.write(b"x")
                st = victim.stat()
                os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return tick

    with pytest.raises(ArchiveError, match="changed while it was being archived|cannot read|cannot copy"):
        build_archive(dataclasses.replace(opts, force=True), progress=mutate_on_first_chunk)
    assert (sha(old) if old.is_file() else sorted(os.listdir(old))) == before
    assert temps(tmp_path / "out") == []


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive", "zip-store"])
def test_input_changed_after_it_was_read_is_not_published(tmp_path: Path, fmt: str):
    """doit records the inputs' state after the build: an input that changed after it was
    archived (while later files were read) must fail the build, or doit would record the new
    content as archived and never rebuild."""
    model = write_tree(tmp_path / "model", {"a_first.bin": b"a" * 100_000, "service.py": HANDLER,
                                            "z_last.bin": os.urandom(3 << 20)})
    opts = ArchiveOptions(model_name="m", handler="service", model_path=model,
                          export_path=tmp_path / "out", archive_format=fmt).resolved(tmp_path)
    calls = []

    def change_first_input_later(total: int):
        def tick(n: int) -> None:
            calls.append(n)
            if len(calls) == 2:  # a_first.bin has been read and checked; the build goes on
                victim = model / "a_first.bin"
                victim.write_bytes(b"b" * 100_000)
                st = victim.stat()
                os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return tick

    with pytest.raises(ArchiveError, match="a_first.bin changed while it was being archived"):
        build_archive(opts, progress=change_first_input_later)
    assert len(calls) > 2  # the change happened mid-build, not at the end
    assert not (tmp_path / "out").exists()  # the build made the folder, so it took it away


def test_file_vanishing_during_the_walk_is_a_clean_error_or_success(tmp_path: Path):
    """A writer thread creates and deletes files while selections run: only ArchiveError."""
    from mar_tasks import select_files
    model = write_tree(tmp_path / "model", {"service.py": HANDLER})
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            p = model / f"sub{i % 5}" / f"f{i}.txt"
            p.parent.mkdir(exist_ok=True)
            p.write_text("x")
            p.unlink()
            i += 1

    th = threading.Thread(target=churn)
    th.start()
    outcomes = {"ok": 0, "error": 0}
    opts = ArchiveOptions(model_name="m", handler="service", model_path=model).resolved(tmp_path)
    try:
        deadline = time.time() + 3
        while time.time() < deadline:
            try:
                select_files(opts)
                outcomes["ok"] += 1
            except ArchiveError as exc:
                assert "disappeared" in str(exc)
                outcomes["error"] += 1
    finally:
        stop.set()
        th.join()
    assert outcomes["ok"] > 0


DISK_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
from mar_tasks.cli.archive import main
sys.exit(main(sys.argv[1:]))
"""


def test_write_failure_keeps_the_old_archive(tmp_path: Path):
    model = big_model(tmp_path / "model")
    out = tmp_path / "out"
    write_tree(out, {})
    small = write_tree(tmp_path / "small", {"service.py": HANDLER})
    subprocess.run(cli(small, out), check=True)  # a small previous archive
    before = sha(out / "m.mar")
    r = subprocess.run([sys.executable, "-c", DISK_FULL, *cli(model, out)[3:]], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sha(out / "m.mar") == before and temps(out) == []


def test_real_full_file_system_keeps_the_old_archive(tmp_path: Path):
    mnt = tmp_path / "small_fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        small = write_tree(tmp_path / "small", {"service.py": HANDLER})
        subprocess.run(cli(small, mnt), check=True)
        before = sha(mnt / "m.mar")
        r = subprocess.run(cli(big_model(tmp_path / "model"), mnt), capture_output=True, text=True)
        assert r.returncode == 1 and "No space left" in r.stderr and "free some space" in r.stderr, r.stderr
        assert sha(mnt / "m.mar") == before and temps(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)])


def test_sigterm_removes_the_temporary_at_once(tmp_path: Path):
    model = holdable(big_model(tmp_path / "model"))
    out = tmp_path / "out"
    out.mkdir()
    with HeldTerminal() as terminal:  # the build stops mid-write until let go
        proc = terminal.start([c for c in cli(model, out) if c != "-q"], tmp_path)
        wait_until_writing(proc, out / "m.mar")
        assert temps(out), "no temporary while writing: the archive is not written beside the target"
        proc.send_signal(signal.SIGTERM)
        terminal.let_go()
        rc = proc.wait(timeout=60)
    assert rc == 128 + signal.SIGTERM
    assert temps(out) == [] and not (out / "m.mar").exists()


def _fds_on(file_id: Tuple[int, int]) -> List[int]:
    """This process's descriptors open on the file (st_dev, st_ino) (Linux /proc)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{name}")
            if (st.st_dev, st.st_ino) == file_id:
                found.append(int(name))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_replaced_archive_is_released_after_publishing(tmp_path: Path):
    target, tmp = tmp_path / "m.mar", tmp_path / ".m.mar.tmp"
    target.write_bytes(b"old" * (atomic.RELEASE_FROM // 3 + 1))
    old = target.stat()
    old_id = (old.st_dev, old.st_ino)
    tmp.write_bytes(b"new")
    atomic.publish(tmp, target)
    assert target.read_bytes() == b"new" and not tmp.exists()
    deadline = time.monotonic() + 10
    while _fds_on(old_id) and time.monotonic() < deadline:  # closed on a thread
        time.sleep(0.01)
    assert _fds_on(old_id) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX")
def test_only_large_regular_files_are_held_across_the_rename(tmp_path: Path):
    big, small, link, fifo = (tmp_path / n for n in ("big", "small", "link", "fifo"))
    with open(big, "wb") as f:
        f.truncate(atomic.RELEASE_FROM)
    small.write_bytes(b"x" * 1000)
    link.symlink_to(big)
    os.mkfifo(fifo)
    fd = atomic._hold_replaced(big)
    assert fd is not None and os.fstat(fd).st_ino == big.stat().st_ino
    os.close(fd)
    # A symlink is replaced itself, not its target; a FIFO must not block the build.
    for path in (small, link, fifo, tmp_path, tmp_path / "missing"):
        assert atomic._hold_replaced(path) is None, path


def test_a_published_folder_replaces_the_old_one(tmp_path: Path):
    target, tmp = tmp_path / "m", tmp_path / ".m.tmp"
    write_tree(target, {"old.txt": "old", "sub/x": "1"})
    write_tree(tmp, {"new.txt": "new"})
    atomic.publish(tmp, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # the old folder is gone too
