"""One doit run at a time per project, so doit's state file is never written by two.

doit's default state file (``.doit.db``, a dbm) is rewritten at the end of each run; two
runs at once can interleave those writes and leave a file every later run fails to read
(plain doit does the same). A dodo that imports ``task_archive`` from ``mar_tasks``
therefore takes an advisory lock (``flock``) on ``.mar_tasks.lock`` in the project folder as
doit imports the dodo, which is before doit opens its state file; a second run prints one
line and waits. :func:`project_tasks` takes it too. A dodo of your own can call
:func:`hold_project_lock` at module level for the same protection. The lock goes with the
process (the kernel releases it at exit, even after SIGKILL); a program that runs doit
in-process more than once keeps it until it exits or calls :func:`release_project_lock`.
Where ``fcntl`` does not exist (Windows) no lock is taken.

The holder writes its pid into the file. doit's worker processes started with *spawn* or
*forkserver* import the dodo again, and so ask for the lock the run's main process holds; a
process whose parent (or, under forkserver, grandparent) holds it goes on: waiting would
deadlock the run.
"""
from __future__ import annotations

import os
import stat
import sys
from typing import Dict, Optional

LOCK_NAME = ".mar_tasks.lock"
_held: Dict[str, int] = {}


def hold_project_lock(folder: Optional[str] = None) -> bool:
    """Take the project's lock (waiting for another run to end); True once held."""
    try:
        import fcntl
    except ImportError:
        return False
    path = os.path.abspath(os.path.join(folder or os.getcwd(), LOCK_NAME))
    if path in _held:
        return True
    fd = _open_lock_file(path)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if _holder(fd) in _parents():  # our parent's run: we are one of its workers
            os.close(fd)
            return False
        print(f"mar_tasks: another doit run holds {path}; waiting for it to finish",
              file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[path] = fd
    return True


def _open_lock_file(path: str) -> Optional[int]:
    """The lock file, created if need be; None (and one line) when something else has its
    name: a link is never followed (its target would be written), a FIFO never waited on."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_NONBLOCK", 0)
    why = "it cannot be opened"
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        why = exc.strerror or why
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = stat.S_IFREG
    if not stat.S_ISREG(mode):
        why = "it is a symlink" if stat.S_ISLNK(mode) else "it is a folder" \
            if stat.S_ISDIR(mode) else "it is a FIFO, socket or device"
    print(f"mar_tasks: cannot use {path} as the project's lock ({why}); running without the "
          "one-run-at-a-time lock: move that away", file=sys.stderr, flush=True)
    return None


def _parents() -> "set[int]":
    """Our ancestors' pids, nearest first, a few levels up: the OS parent (doit, under
    spawn) and, where /proc tells, its parents (under forkserver the OS parent is the fork
    server, itself doit's child)."""
    pids = [os.getppid()]
    for _ in range(4):
        try:
            with open(f"/proc/{pids[-1]}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if ppid <= 1:
            break
        pids.append(ppid)
    return set(pids)


def _holder(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return -1
    return int(text) if text.isdigit() else -1


def release_project_lock(folder: Optional[str] = None) -> None:
    """Let the next run in (for programs that run doit in-process)."""
    path = os.path.abspath(os.path.join(folder or os.getcwd(), LOCK_NAME))
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)
