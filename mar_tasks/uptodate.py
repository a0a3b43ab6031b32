"""The extra up-to-date checks of an archive task, run by doit before its file_dep check.

1. ``doit archive:NAME --force`` rebuilds that model (the task's own ``force`` parameter),
   and so does a change of any option that changes the bytes (the options' digest saved
   with the last build differs).
2. The archive on disk is the one we wrote: its (size, mtime_ns) fingerprint must match the
   one saved when it was built, so an archive edited or replaced by hand is rebuilt (doit
   alone only checks that a target exists).
3. The inputs doit recorded are the inputs we archived. doit saves each file_dep's state
   *after* the build; an input rewritten in between (a watcher reacting to the new archive)
   would be recorded as built. The build saves a digest of (path, size, mtime) of what it
   read (:func:`inputs_digest`); if doit's saved states give another digest, rebuild.
4. Touched-but-unchanged inputs: for a file_dep whose mtime moved, compare its content hash
   (:mod:`mar_tasks.content_hashes`) with the one doit saved; if equal, store the new mtime
   in doit's state (and in our digest), so neither this run nor later runs hash it again.

Only the MD5 checker's state is read. Under another checker (``--check_file_uptodate
timestamp``), or when the state saved by the last run has another shape, the decision is
left to doit entirely.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, List, Optional, Tuple

from doit.dependency import MD5Checker, UptodateCalculator

from .content_hashes import file_md5
from .doit_state import save_state, save_values, saved_checker, saved_state


def dep_path(path: str, cwd: str) -> str:
    """A file path spelled as a hand-written file_dep or target would be: relative under
    the current folder (doit's: the dodo's), absolute elsewhere."""
    return path[len(cwd) + 1:] if path.startswith(cwd + os.sep) else path


def inputs_digest(items: Iterable[Tuple[str, int, float]]) -> str:
    """sha256 of the sorted (file_dep path, size, st_mtime) of an archive's inputs."""
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()


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


def _is_md5_state(state: Any) -> bool:
    return isinstance(state, (list, tuple)) and len(state) == 3 \
        and isinstance(state[0], (int, float)) and isinstance(state[1], int)


class ArchiveUptodate(UptodateCalculator):
    """``uptodate`` entry of one archive task (see module docstring)."""

    def __init__(self, target: str, deps: List[Tuple[str, float, int]], config: str = "") -> None:
        super().__init__()
        self.target = target
        self.config = config
        self.deps = deps  # (file_dep path, st_mtime, st_size) as seen when tasks were loaded
        self.dep_manager: Any = None

    def setup(self, dep_manager: Any, tasks_dict: Any) -> None:
        super().setup(dep_manager, tasks_dict)
        self.dep_manager = dep_manager

    def __call__(self, task: Any, values: dict) -> Optional[bool]:
        if (getattr(task, "options", None) or {}).get("force") or values.get("config") != self.config:
            return False
        saved = values.get("output")
        if saved is not None and os.path.lexists(self.target) \
                and output_fingerprint(self.target) != saved:
            return False
        dm = self.dep_manager
        if dm is None or not isinstance(dm.checker, MD5Checker) \
                or saved_checker(dm, task.name) not in (None, "MD5Checker"):
            return None  # another checker, now or last time: file_dep is doit's to judge
        states = {}
        for path, _, _ in self.deps:
            state = saved_state(dm, task.name, path)
            if state is not None and not _is_md5_state(state):
                return None
            states[path] = state
        archived = values.get("inputs")
        if archived is not None and None not in states.values() \
                and inputs_digest((p, s[1], s[0]) for p, s in states.items()) != archived:
            return False  # an input changed between our read and doit's record of it
        changed = refreshed = False
        for path, mtime, size in self.deps:
            state = states[path]
            if state is None or state[0] == mtime:
                continue
            if state[1] != size:
                changed = True
                continue
            try:
                digest = file_md5(path)
            except OSError:
                return None  # let doit report the missing file
            if digest == state[2]:
                states[path] = (mtime, size, digest)
                save_state(dm, task.name, path, states[path])  # touched only: remember
                refreshed = True
            else:
                changed = True
        if refreshed and not changed and archived is not None:
            save_values(dm, task.name, {**values, "inputs": inputs_digest(
                (p, s[1], s[0]) for p, s in states.items())})
        return False if changed else None
