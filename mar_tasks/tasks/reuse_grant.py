"""Carrying entries over on a doit rerun: what the up-to-date check hands the action.

When :class:`~mar_tasks.tasks.uptodate.ArchiveUptodate` has found the output still the one
the last build wrote (its saved fingerprint holds), the options unchanged and doit's saved
input states the ones that build archived (verified), it attaches a :class:`ReuseGrant` to
the task (an attribute of doit's Task object, which doit hands to the action and pickles
for a ``-P process`` worker with the rest of the task), and
:func:`~mar_tasks.tasks.archive_tasks.run_archive` takes it from there. (Not a task option:
options are only made for a task that runs, and making them for every task on a no-op run
would cost what the no-op saves.) The build's layout, deflate implementation and entry
digests are read from its record (:mod:`mar_tasks.tasks.build_records`) only then, when the
action asks. An entry is then carried over only if
the last build archived the same file_dep under the same name, with the same deflate
implementation, the input's (st_mtime, size) is still what doit saved for it (doit's own
rule that a file whose mtime did not move did not change), and its (inode, ctime) is still
the one the build saved (the up-to-date check's step 4: an edit whose mtime was put back,
or new content under an mtime doit already holds, moves it).
Nothing else is trusted: ``--force``, other options, an output edited by hand, a build
without these values (an older mar_tasks) all rebuild from the inputs alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import os

from mar_tasks.tasks.doit_private import saved_state
from mar_tasks.tasks.fingerprints import dep_path, output_fingerprint, still_the_output

if TYPE_CHECKING:  # the engine's side loads with the first build, not with the tasks
    from mar_tasks.formats.carry_over import Reuse

State = Tuple[float, int]


class ReuseGrant:
    """The saved facts a rerun may carry entries over on (see module docstring).

    doit's saved states are read when the action asks, in the process that runs it; a
    grant pickled for a ``-P process`` worker reads them first and takes them along.
    """

    def __init__(self, output: Any, token: str, dep_manager: Any, task_name: str,
                 deps: Sequence[str], stats: Sequence[int]) -> None:
        self.output = output
        self.token = token  # the last build's, naming its record
        self.stats = stats  # (inode, ctime_ns) of each of the build's inputs, flat, as built
        self._dm = dep_manager
        self._task = task_name
        self._deps = deps
        self._states: Optional[Dict[str, State]] = None

    def states(self) -> Dict[str, State]:
        """doit's saved (st_mtime, size) of each input, by file_dep path."""
        if self._states is None:
            out: Dict[str, State] = {}
            for dep in self._deps:
                s = saved_state(self._dm, self._task, dep) if self._dm is not None else None
                if isinstance(s, (list, tuple)) and len(s) == 3:
                    out[dep] = (s[0], s[1])
            self._states = out
            self._dm = None
        return self._states

    def __getstate__(self) -> Dict[str, Any]:
        self.states()
        return {**self.__dict__, "_dm": None}

    def reuse(self, target: str, cwd: str) -> "Optional[Reuse]":
        """The engine's :class:`~mar_tasks.formats.carry_over.Reuse`, or None when the last
        build's record is missing or foreign, or the deflate implementation differs from
        the one the old output was written with."""
        from mar_tasks.formats.carry_over import Reuse
        from mar_tasks.formats.deflate import IMPLEMENTATION
        from mar_tasks.tasks import build_records
        record = build_records.load(target, self.token)
        if record is None:
            return None
        entries, digests = record["entries"], record["digests"]  # (shapes checked by load)
        if record["deflate"] != IMPLEMENTATION or len(self.stats) != 2 * len(entries):
            return None
        old = {arcname: dep for arcname, dep in entries}
        # A saved ctime of 0 or less vouches for nothing (changed too recently, or during
        # the build: see uptodate.input_stamps).
        built = {dep: (self.stats[2 * i], self.stats[2 * i + 1])
                 for i, (_, dep) in enumerate(entries) if self.stats[2 * i + 1] > 0}
        states = self.states()

        def unchanged(e: Any) -> bool:
            dep = dep_path(e.source, cwd)
            if old.get(e.arcname) != dep or states.get(dep) != (e.mtime, e.size) or dep not in built:
                return False
            try:
                st = os.stat(e.source)
            except OSError:
                return False
            return (st.st_ino, st.st_ctime_ns) == built[dep]

        saved = self.output
        return Reuse(lambda: still_the_output(output_fingerprint(target), saved), unchanged, digests)


def saved_layout(entries: Sequence[Any], cwd: str) -> List[List[str]]:
    """The (arcname, file_dep) pairs of a build, in its record for the next one's grant."""
    return [[e.arcname, dep_path(e.source, cwd)] for e in entries]


ATTR = "mar_tasks_reuse"  # the attribute of doit's Task that holds the grant


def clear(task: Any) -> None:
    """Drop a grant left on `task` by an earlier check."""
    vars(task).pop(ATTR, None)


def grant(task: Any, values: dict, fingerprint: Any, dep_manager: Any, deps: Sequence[str]) -> None:
    """Attach a grant to `task` if the last build saved what one needs."""
    token, stats = values.get("build"), values.get("stats")
    if fingerprint is None or not isinstance(token, str) or not isinstance(stats, list):
        return
    setattr(task, ATTR, ReuseGrant(fingerprint, token, dep_manager, task.name, deps, stats))


def granted(task: Any) -> Optional[ReuseGrant]:
    """The grant the up-to-date check attached to `task`, if any."""
    return getattr(task, ATTR, None)
