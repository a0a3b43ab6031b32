"""The extra up-to-date checks of an archive task, run by doit before its file_dep check.

The rule: an archive is kept only if plain doit would keep it *and* the archive holds what a
fresh build would write. So, besides doit's own file_dep check (MD5 checker: mtime, then
size, then content):

1. ``doit archive:NAME --force`` rebuilds that model (the task's own ``force`` parameter),
   and so does a change of any option that changes the bytes (the options' digest saved
   with the last build differs).
2. The archive on disk is the one we wrote: its fingerprint (size, mtime_ns, inode,
   ctime_ns; a no-archive folder: the same of every file) must match the one saved
   when it was built or last verified. A file archive that no longer matches but still has
   its size (copied with ``cp -a``, ``rsync -a`` or ``tar``; touched) is verified: its stamp
   must be the one the build saved and hold for its bytes, and the archive must pass
   ``mar-inspect --verify``; then it is adopted (the new fingerprint saved). Otherwise rebuilt.
3. The inputs doit recorded are the inputs we archived. doit saves each file_dep's state
   *after* the build; an input rewritten in between (a watcher reacting to the new archive)
   would be recorded as built. The build saves a digest of (path, size, mtime) of what it
   read (:func:`inputs_digest`); the first check after the build compares doit's saved
   states with it (rebuild if they differ) and then records them as :data:`VERIFIED`.
4. Every input's (inode, ctime_ns) must be the one saved when its content was last known
   to be what the archive holds (by the build, or by hashing it since), as git's index
   does. Any write, ``chmod``, ``touch`` or ``touch -r``, and any copy or replacement, moves
   them, and the ctime cannot be set by users: so an edit whose mtime was put back, or a
   new file content arriving under an mtime doit already holds, is seen, which doit alone
   does not. An input whose stamp moved is hashed (once per run for all tasks:
   :mod:`mar_tasks.tasks.content_hashes`) and compared with doit's saved MD5, and its
   owner-executable bit (which the archive records) with the archived one: any difference
   rebuilds. When both are the same the new stamp is saved, and a moved mtime is written
   into doit's state too, so neither doit nor we hash that file again.

5. A rerun may carry unchanged entries over from the output it replaces: once 2 and 3
   hold, a grant is attached to the task (:mod:`mar_tasks.tasks.reuse_grant`), which
   carries an entry only while its input's step-4 stamp is still the saved one.

A no-op run so costs one ``stat`` per input on top of doit's own, and hashes nothing.
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

from mar_tasks.tasks import remembered_listings, reuse_grant
from mar_tasks.tasks.content_hashes import RACY_NS
from mar_tasks.tasks.doit_private import save_state, save_values, saved_checker, saved_state
from mar_tasks.tasks.fingerprints import output_fingerprint


def inputs_digest(items: Iterable[Tuple[str, int, float]]) -> str:
    """sha256 of the sorted (file_dep path, size, st_mtime) of an archive's inputs."""
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()


# The ctime slot of an input's saved stamp (see step 4) when it vouches for nothing:
RECHECK = 0   # changed too recently to be sure a later change moves it: hash it next run
CHANGED = -1  # changed after its build started: what was read is unknown, so rebuild


def input_stamps(entries: Sequence[Any], started_ns: int) -> List[int]:
    """Step 4's saved stamps after a build: (inode, ctime_ns) of each input, flat, in the
    entries' (file_dep's) order. `entries` are what the build selected (source, size,
    mtime_ns, executable); `started_ns` is when the build began."""
    out: List[int] = []
    for e in entries:
        try:
            st = os.stat(e.source)
        except OSError:
            out += (0, CHANGED)
            continue
        ctime = st.st_ctime_ns
        if ctime >= started_ns or st.st_size != e.size or st.st_mtime_ns != e.mtime_ns \
                or bool(st.st_mode & stat.S_IXUSR) != e.executable:
            ctime = CHANGED
        elif ctime >= started_ns - RACY_NS:
            ctime = RECHECK
        out += (st.st_ino, ctime)
    return out


def _adoptable(target: str, saved: Any, now: List[Any], stamp: Any) -> bool:
    """Step 2: an archive file we no longer recognise is the one we built if it has the
    size and the stamp the build saved, and its stamp holds for its bytes (``mar-inspect
    --verify`` passes). Copies and restores keep both; any edit breaks the stamp."""
    if not (isinstance(stamp, str) and isinstance(saved, list) and len(saved) == len(now) == 4
            and isinstance(saved[0], int) and saved[0] == now[0]):
        return False
    from pathlib import Path
    from mar_tasks.errors import ArchiveError
    from mar_tasks.formats.archive_reader import verify_archive
    from mar_tasks.formats.ownership_stamp import stamp_of
    if stamp_of(Path(target)) != stamp.encode("ascii", "replace"):
        return False
    try:
        return not verify_archive(target)
    except ArchiveError:
        return False


def _adoptable_folder(target: str, saved: Any, now: List[Any], values: dict, dm: Any,
                      name: str) -> bool:
    """Step 2 for a no-archive folder we no longer recognise (new inodes: copied or
    restored). It carries no stamp, and its files all have one fixed mtime, so a restore
    can leave a newer build's file in place (``rsync -a`` skips a file of the same size and
    mtime): it is the one we built only if it has the same files and folders, sizes, mtimes
    and modes as saved, every file regular, and every file's content the archived one: an
    entry's MD5 that of its input as doit saved it when it was archived (doit's states must
    be the ones the build read, step 3), the manifest's the one the build's record holds.
    Reads the folder once; anything else rebuilds."""
    if dm is None or not isinstance(saved, list) or len(saved) != len(now) \
            or not all(isinstance(s, list) and s[:4] == n[:4] for s, n in zip(saved, now)):
        return False
    from mar_tasks.plan.manifest import MANIFEST_ARCNAME
    from mar_tasks.regular_files import open_regular
    from mar_tasks.tasks import build_records
    record = build_records.load(target, values.get("build"))
    if record is None or not isinstance(record.get("manifest_md5"), str):
        return False
    built = build_records.archived_inputs(record)
    archived = values.get("inputs")
    if archived != VERIFIED and _archived_as_saved(dm, name, built, archived) is not True:
        return False
    expected = {MANIFEST_ARCNAME: record["manifest_md5"]}
    for arcname, dep in record["entries"]:
        state = saved_state(dm, name, dep)
        if not _is_md5_state(state):
            return False
        expected[arcname] = state[2]
    files = [n for n in now if not n[0].endswith("/")]
    if sorted(expected) != sorted(n[0].replace(os.sep, "/") for n in files) \
            or not all(stat.S_ISREG(n[3]) for n in files) \
            or not all(stat.S_ISDIR(n[3]) for n in now if n[0].endswith("/")):
        return False
    for rel, md5 in expected.items():
        h = hashlib.md5()
        try:
            with open_regular(os.path.join(target, rel)) as f:  # never a link, never a FIFO
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return False
        if h.hexdigest() != md5:
            return False
    return True


def _is_md5_state(state: Any) -> bool:
    return isinstance(state, (list, tuple)) and len(state) == 3 \
        and isinstance(state[0], (int, float)) and isinstance(state[1], int)


def _archived_as_saved(dm: Any, name: str, built: Sequence[str], archived: str) -> Optional[bool]:
    """Step 3 over the inputs `built`: True if doit's saved states are the (size, mtime)
    the build read, False if one differs (changed between our read and doit's record of
    it), None if doit has no MD5 state for one (doit decides: it rebuilds a new file)."""
    states = [saved_state(dm, name, path) for path in built]
    if None in states or not all(map(_is_md5_state, states)):
        return None
    return inputs_digest((p, s[1], s[0]) for p, s in zip(built, states)) == archived


VERIFIED = "verified"  # values["inputs"] once a run found doit's states match the archive's


class ArchiveUptodate(UptodateCalculator):
    """``uptodate`` entry of one archive task (see module docstring); `deps` are the task's
    file_dep paths, `config` the options' digest."""

    # doit reads the signature of every uptodate callable on every run; a class-level
    # __signature__ saves it from building one per task (see inspect.signature).
    __signature__ = inspect.Signature([
        inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("values", inspect.Parameter.POSITIONAL_OR_KEYWORD)])

    def __init__(self, target: str, deps: Sequence[str], config: str = "",
                 carry_over: bool = True) -> None:
        self.target = target
        self.carry_over = carry_over  # False under ``doit archive --force``: inputs alone
        self.config = config
        self.deps = deps
        self.dep_manager: Any = None
        super().__init__()

    def setup(self, dep_manager: Any, tasks_dict: Any) -> None:
        # (Not kept: `tasks_dict` would tie every task to every other in one cycle.)
        self.dep_manager = dep_manager
        if remembered_listings._pending:  # every task creator has run: save what they listed
            remembered_listings.save_pending()

    def __call__(self, task: Any, values: dict) -> Optional[bool]:
        reuse_grant.clear(task)
        verdict = self._check(task, values)
        if verdict is False:
            self._forget_moved(task.name, values)
        return verdict

    def _forget_moved(self, name: str, values: dict) -> None:
        """Before a rebuild this check decided: forget doit's saved state of every input
        whose step-4 stamp moved (or all, when the saved stamps cannot be matched to the
        inputs). After the build doit hashes an input again only if its mtime differs from
        the saved one; an input changed under its old mtime would keep an MD5 of content
        the new archive does not hold, and a later change back would then look unchanged."""
        dm = self.dep_manager
        if dm is None or not isinstance(dm.checker, MD5Checker):
            return
        saved = values.get("stats")
        built: Sequence[str] = self.deps
        if isinstance(saved, list) and len(saved) != 2 * len(built):
            built = self._recorded_inputs(values) or ()
        stamps = {dep: tuple(saved[2 * i:2 * i + 2]) for i, dep in enumerate(built)} \
            if isinstance(saved, list) and len(saved) == 2 * len(built) else {}
        for dep in self.deps:
            stamp = stamps.get(dep)
            try:
                st = os.stat(dep)
            except OSError:
                continue  # doit reports a missing file
            if stamp is None or not isinstance(stamp[1], int) or stamp[1] <= 0 \
                    or (st.st_ino, st.st_ctime_ns) != stamp:
                save_state(dm, name, dep, None)

    def _recorded_inputs(self, values: dict) -> Optional[List[str]]:
        """The inputs the last build archived, from its record (None without one)."""
        from mar_tasks.tasks import build_records
        record = build_records.load(self.target, values.get("build"))
        return build_records.archived_inputs(record) if record else None

    def _check(self, task: Any, values: dict) -> Optional[bool]:
        """Steps 1 to 5 (module docstring): False rebuilds, None leaves it to doit."""
        if (getattr(task, "options", None) or {}).get("force") or values.get("config") != self.config:
            return False
        dm = self.dep_manager
        update: dict = {}
        saved = values.get("output")
        now = None
        if saved is not None:
            now = output_fingerprint(self.target)
            if now is not None and now != saved:
                folder = bool(now) and isinstance(now[0], list)
                if not (_adoptable_folder(self.target, saved, now, values, dm, task.name) if folder
                        else _adoptable(self.target, saved, now, values.get("stamp"))):
                    return False
                update["output"] = now  # (a missing target: doit rebuilds)
        try:
            return self._check_inputs(dm, task, values, update, now)
        finally:
            if update and dm is not None:
                save_values(dm, task.name, {**values, **update})

    def _check_inputs(self, dm: Any, task: Any, values: dict, update: dict,
                      output: Any) -> Optional[bool]:
        """Steps 3, 4 and 5; puts what should be saved in `update`."""
        name = task.name
        if dm is None or not isinstance(dm.checker, MD5Checker) \
                or saved_checker(dm, name) not in (None, "MD5Checker"):
            return None  # another checker, now or last time: file_dep is doit's to judge
        deps = self.deps
        archived = values.get("inputs")
        if archived not in (None, VERIFIED):
            # The first check since the build: doit's states must be what was archived.
            verdict = _archived_as_saved(dm, name, deps, archived)
            if verdict is not True:
                # Files added or removed since: the archived ones are the build record's
                # (new files have no state yet, and must not stop the others from being
                # vouched for, so that a rebuild can carry them over).
                built = self._recorded_inputs(values)
                if built is not None and built != list(deps):
                    verdict = _archived_as_saved(dm, name, built, archived)
                if verdict is not True:
                    return verdict
            update["inputs"] = VERIFIED
        if archived is not None and self.carry_over and output is not None:
            reuse_grant.grant(task, values, output, dm, deps)  # step 5
        try:
            sts = list(map(os.stat, deps))
        except OSError:
            return None  # let doit report the missing file
        now = [v for st in sts for v in (st.st_ino, st.st_ctime_ns)]
        saved = values.get("stats")
        if now == saved:
            return None
        if not isinstance(saved, list) or len(saved) != len(now):
            return None  # another set of files than was built: doit rebuilds ('deps:')
        return self._recheck(dm, name, sts, now, saved, set(values.get("x") or ()), update)

    def _recheck(self, dm: Any, name: str, sts: List[os.stat_result], now: List[int],
                 saved: List[Any], executable: set, update: dict) -> Optional[bool]:
        """Step 4 for the inputs whose stamp moved: False if one's content or executable
        bit is not the archived one; else their new stamps (and mtimes) are saved."""
        from mar_tasks.tasks.content_hashes import file_md5  # (a no-op run never hashes)
        fresh = list(saved)
        for i, path in enumerate(self.deps):
            if now[2 * i:2 * i + 2] == saved[2 * i:2 * i + 2]:
                continue
            st = sts[i]
            state = saved_state(dm, name, path)
            if state is None or not _is_md5_state(state):
                return None
            if saved[2 * i + 1] == CHANGED or st.st_size != state[1] \
                    or bool(st.st_mode & stat.S_IXUSR) != (i in executable):
                return False  # (its state, and every moved input's, is forgotten: _forget_moved)
            before = time.time_ns()
            try:
                digest = file_md5(path)
            except OSError:
                return None  # let doit report the missing file
            if digest != state[2]:
                return False
            if st.st_mtime != state[0]:
                save_state(dm, name, path, (st.st_mtime, st.st_size, digest))  # touched only
            fresh[2 * i:2 * i + 2] = (st.st_ino, st.st_ctime_ns if st.st_ctime_ns < before - RACY_NS
                                      else RECHECK)
        if fresh != saved:
            update["stats"] = fresh
        return None
