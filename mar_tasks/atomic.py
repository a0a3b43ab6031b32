"""Output is built beside the target and renamed into place: never a torn archive.

A build writes ``.mar_tasks-<pid>-<8 hex>.tmp`` in the target's folder (hidden, so never
archived; short and independent of the model name, so every name the file system can hold
builds), then renames it over the target in one step. A folder (no-archive) is swapped
with ``renameat2(RENAME_EXCHANGE)`` where Linux offers it. A killed build leaves only its
temporary, which the next build in that folder removes once its process is gone: only a
name of exactly that pattern, of a process that no longer runs, that is a regular file or
a folder shaped like ours (see :func:`clean_stale`); nothing else is ever removed.
A large file that is replaced is freed on a thread, after the rename (see
:func:`_hold_replaced`).
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Ours, and (optional prefix) those of mar_tasks 0.1.0, which put the target's name first.
_TEMP_RE = re.compile(r"\.(?:.+\.)?mar_tasks-([0-9]+)-[0-9a-f]{8}\.tmp\Z", re.S)


def temp_path_for(target: Path) -> Path:
    return target.with_name(f".mar_tasks-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's, or no pid at all: not ours to remove
    return True


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree; missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _looks_like_our_temp(path: Path) -> bool:
    """A regular file, or a folder that is empty or holds MAR-INF/ (written first); never a
    link, FIFO or device, whatever its name."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISREG(st.st_mode):
        return True
    if not stat.S_ISDIR(st.st_mode):
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return not names or "MAR-INF" in names


def clean_stale(target: Path) -> int:
    """Remove temporaries beside `target` left by builds whose process is gone; return how
    many (see module docstring for what counts as ours)."""
    removed = 0
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    for name in names:
        match = _TEMP_RE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        path = target.parent / name
        if pid != os.getpid() and not _pid_alive(pid) and _looks_like_our_temp(path):
            remove_path(path)
            removed += 1
    return removed


_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)  # the C library we already run on
            _libc.renameat2  # noqa: B018 (probe)
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


RELEASE_FROM = 8 << 20  # replaced files this large are freed off the build's path


def _hold_replaced(target: Path) -> "int | None":
    """Open the large regular file about to be replaced, so that it is freed at our close.

    A file's blocks are freed when its last name and descriptor go. On this project's
    machines (ext4 mounted with ``discard``, as many cloud images are) that takes ~0.6 ms
    per MiB (~0.08 ms remounted without discard), so a rename over a 2 GiB archive took
    ~1.5 s. :func:`publish` holds a descriptor across the rename and closes it on a thread:
    the freeing overlaps whatever comes next (under doit, the next build) instead of
    delaying the build's end. (A process forked in the few ms before that close inherits the
    descriptor and keeps the old file's space until it exits or execs.)
    """
    if os.name == "nt":  # Windows cannot replace an open file
        return None
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size < RELEASE_FROM:
        os.close(fd)
        return None
    return fd


def rename_writes_back(target: Path) -> bool:
    """Whether publishing over `target` makes the kernel write the new file's data back in
    the rename itself: ext4 does when the name exists (``auto_da_alloc``, on unless mounted
    ``noauto_da_alloc``), so that a crash never leaves the name on an empty file. For a
    2 GiB archive that is ~0.6 s of one core at the build's very end; a writer told so
    starts the writeback as it writes instead (:mod:`mar_tasks.formats.zip_writer`). Read
    from ``/proc/self/mountinfo`` (Linux); False where unknown."""
    try:
        dev = os.lstat(target).st_dev
        with open("/proc/self/mountinfo", "rb") as f:
            table = f.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return False
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in table.splitlines():
        fields = line.split(" ")
        if len(fields) > 5 and fields[2] == want and " - " in line:
            fstype, _, rest = line.split(" - ", 1)[1].partition(" ")
            options = fields[5].split(",") + rest.rpartition(" ")[2].split(",")
            return fstype == "ext4" and "noauto_da_alloc" not in options
    return False


def publish(tmp: Path, target: Path) -> None:
    """Put the finished `tmp` at `target`, replacing what is there in one step."""
    if not tmp.is_dir():
        replaced = _hold_replaced(target)
        try:
            os.replace(tmp, target)
        finally:
            if replaced is not None:
                threading.Thread(target=os.close, args=(replaced,), daemon=True).start()
        return
    if not os.path.lexists(target):
        try:
            os.rename(tmp, target)
            return
        except OSError as exc:  # another build published meanwhile: swap with it
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if target.is_dir() and not target.is_symlink() and _exchange(tmp, target):
        remove_path(tmp)  # tmp now holds the old folder
        return
    old = temp_path_for(target)
    os.rename(target, old)
    os.rename(tmp, target)
    remove_path(old)


@contextmanager
def staged(target: Path, is_dir: bool) -> Iterator[Path]:
    """Yield a fresh temporary path beside `target`; publish it only if the block succeeds."""
    clean_stale(target)
    tmp = temp_path_for(target)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        publish(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise
