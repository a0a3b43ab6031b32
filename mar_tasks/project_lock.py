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
"""
from __future__ import annotations

import os
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"mar_tasks: another doit run holds {path}; waiting for it to finish",
              file=sys.stderr, flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    _held[path] = fd
    return True


def release_project_lock(folder: Optional[str] = None) -> None:
    """Let the next run in (for programs that run doit in-process)."""
    path = os.path.abspath(os.path.join(folder or os.getcwd(), LOCK_NAME))
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)
