"""The extra up-to-date checks of an archive task, run by doit before its file_dep check.

1. The archive on disk is the one we wrote: its (size, mtime_ns) fingerprint must match the
   one saved when it was built, so an archive edited or replaced by hand is rebuilt (doit
   alone only checks that a target exists).
2. Touched-but-unchanged inputs: for a file_dep whose mtime moved, compare its content hash
   (see :mod:`mar_tasks.content_hashes`) with the one doit saved; if equal, store the new
   mtime in doit's state so neither this run nor later runs hash it again.
3. Inputs doit has no hash for (new or resized files) are hashed by doit after the build;
   we start those hashes in the background now (:func:`mar_tasks.content_hashes.prefetch`).
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from doit.dependency import MD5Checker, UptodateCalculator

from .content_hashes import file_md5, prefetch


def output_fingerprint(path: str) -> Optional[List[Any]]:
    """(size, mtime_ns) of an archive file; for a no-archive folder, of every file in it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return [st.st_size, st.st_mtime_ns]
    out: List[Any] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            s = os.stat(full)
            out.append([os.path.relpath(full, path), s.st_size, s.st_mtime_ns])
    return out


class ArchiveUptodate(UptodateCalculator):
    """``uptodate`` entry of one archive task (see module docstring)."""

    def __init__(self, target: str, deps: List[Tuple[str, float, int]]) -> None:
        super().__init__()
        self.target = target
        self.deps = deps  # (file_dep path, st_mtime, st_size) as seen when tasks were loaded
        self.dep_manager: Any = None

    def setup(self, dep_manager: Any, tasks_dict: Any) -> None:
        super().setup(dep_manager, tasks_dict)
        self.dep_manager = dep_manager

    def __call__(self, task: Any, values: dict) -> Optional[bool]:
        dm = self.dep_manager
        md5 = dm is not None and isinstance(dm.checker, MD5Checker)
        saved = values.get("output")
        if saved is not None and os.path.lexists(self.target) \
                and output_fingerprint(self.target) != saved:
            if md5:  # it will be rebuilt: doit hashes every input whose mtime moved
                prefetch((path, size) for path, mtime, size in self.deps
                         if (dm._get(task.name, path) or (None,))[0] != mtime)
            return False
        if not md5:
            return None  # another checker: leave file_dep entirely to doit
        changed = False
        unhashed = []  # new or resized: doit hashes these after the build; start them now
        for path, mtime, size in self.deps:
            state = dm._get(task.name, path)
            if state is not None and state[0] == mtime:
                continue
            if state is None or state[1] != size:
                unhashed.append((path, size))
                changed = changed or state is not None
                continue
            try:
                digest = file_md5(path)
            except OSError:
                return None  # let doit report the missing file
            if digest == state[2]:
                dm._set(task.name, path, (mtime, size, digest))  # touched only: remember
            else:
                changed = True
        prefetch(unhashed)
        return False if changed else None
