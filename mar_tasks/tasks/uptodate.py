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
   read (:func:`inputs_digest`); the first check after the build compares doit's saved
   states with it (rebuild if they differ) and then records them as :data:`VERIFIED`, so
   later runs skip the comparison.
4. Touched-but-unchanged inputs: for a file_dep whose mtime moved, compare its content hash
   (:mod:`mar_tasks.tasks.content_hashes`) with the one doit saved; if equal, store the new mtime
   in doit's state, so neither this run nor later runs hash it again. Which inputs are
   looked at on a no-op is said in :class:`ArchiveUptodate`.

5. A rerun may carry unchanged entries over from the output it replaces: once 2 and 3
   hold, a grant is attached to the task (:mod:`mar_tasks.tasks.reuse_grant`).

Only the MD5 checker's state is read. Under another checker (``--check_file_uptodate
timestamp``), or when the state saved by the last run has another shape, the decision is
left to doit entirely.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import stat
import time
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from doit.dependency import MD5Checker, UptodateCalculator

from mar_tasks.tasks import reuse_grant
from mar_tasks.tasks.doit_private import save_state, save_values, saved_checker, saved_state


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
    if not stat.S_ISDIR(st.st_mode):
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


VERIFIED = "verified"  # values["inputs"] once a run found doit's states match the archive's


class ArchiveUptodate(UptodateCalculator):
    """``uptodate`` entry of one archive task (see module docstring).

    `deps` are the task's file_dep paths; `seen` their (st_mtime, st_size) when the tasks
    were loaded, or None when the listing was remembered and no input was stat'ed
    (:mod:`mar_tasks.tasks.remembered_listings`). Then step 4 looks first at the inputs the build
    found large (``values["large"]``: hashing them again is what costs) and at one other
    input, a different one from run to run (picked by the clock); only when one of those
    moved are all of them looked at. A small touched file may so wait a few runs to be
    refreshed; until then doit hashes it, as it would without us.
    """

    # doit reads the signature of every uptodate callable on every run; a class-level
    # __signature__ saves it from building one per task (see inspect.signature).
    __signature__ = inspect.Signature([
        inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("values", inspect.Parameter.POSITIONAL_OR_KEYWORD)])

    def __init__(self, target: str, deps: Sequence[str], config: str = "",
                 seen: Optional[List[Tuple[float, int]]] = None, carry_over: bool = True) -> None:
        self.target = target
        self.carry_over = carry_over  # False under ``doit archive --force``: inputs alone
        self.config = config
        self.deps = deps
        self.seen = seen
        self.dep_manager: Any = None
        super().__init__()

    def setup(self, dep_manager: Any, tasks_dict: Any) -> None:
        # (Not kept: `tasks_dict` would tie every task to every other in one cycle.)
        self.dep_manager = dep_manager

    def __call__(self, task: Any, values: dict) -> Optional[bool]:
        reuse_grant.clear(task)
        if (getattr(task, "options", None) or {}).get("force") or values.get("config") != self.config:
            return False
        saved = values.get("output")
        fingerprint = output_fingerprint(self.target) if saved is not None else None
        if fingerprint not in (saved, None):
            return False
        dm = self.dep_manager
        if dm is None or not isinstance(dm.checker, MD5Checker) \
                or saved_checker(dm, task.name) not in (None, "MD5Checker"):
            return None  # another checker, now or last time: file_dep is doit's to judge
        name = task.name
        archived = values.get("inputs")
        if archived not in (None, VERIFIED):
            # The first check since the build: doit's states must be what was archived.
            # (The archived inputs are the saved layout's, when saved: files added since
            # then have no state yet, and must not stop the others from being vouched for.)
            layout = values.get("entries")
            deps = [dep for _, dep in layout] if isinstance(layout, list) else self.deps
            states = [saved_state(dm, name, path) for path in deps]
            if None in states:
                return None  # a file doit has no state for: doit rebuilds
            if not all(map(_is_md5_state, states)):
                return None
            if inputs_digest((p, s[1], s[0]) for p, s in zip(deps, states)) != archived:
                return False  # an input changed between our read and doit's record of it
            save_values(dm, name, {**values, "inputs": VERIFIED})
        if archived is not None and self.carry_over:  # doit's states are the output's: see reuse_grant
            reuse_grant.grant(task, values, fingerprint, dm, self.deps)
        seen = self.seen
        if seen is None:
            if not self._any_moved(dm, name, values.get("large") or []):
                return None
            try:
                seen = [(st.st_mtime, st.st_size) for st in map(os.stat, self.deps)]
            except OSError:
                return None  # let doit report the missing file
        return self._refresh_touched(dm, name, seen)

    def _any_moved(self, dm: Any, name: str, large: List[str]) -> bool:
        """Whether the large inputs, or one other (see the class docstring), have another
        mtime than doit saved (or cannot be stat'ed: doit will say why)."""
        picks = [*large, self.deps[time.perf_counter_ns() // 1000 % len(self.deps)]] if self.deps else large
        for path in picks:
            state = saved_state(dm, name, path)
            try:
                if _is_md5_state(state) and os.stat(path).st_mtime != state[0]:
                    return True
            except OSError:
                return True
        return False

    def _refresh_touched(self, dm: Any, name: str, seen: List[Tuple[float, int]]) -> Optional[bool]:
        """Step 4: an input whose mtime moved but whose content did not gets its new mtime
        in doit's state, so neither doit nor we hash it again. False if one changed."""
        from mar_tasks.tasks.content_hashes import file_md5  # (a no-op run never hashes)
        changed = False
        for path, (mtime, size) in zip(self.deps, seen):
            state = saved_state(dm, name, path)
            if state is None or not _is_md5_state(state) or state[0] == mtime:
                continue
            if state[1] != size:
                changed = True
                continue
            try:
                digest = file_md5(path)
            except OSError:
                return None  # let doit report the missing file
            if digest == state[2]:
                save_state(dm, name, path, (mtime, size, digest))  # touched only: remember
            else:
                changed = True
        return False if changed else None
