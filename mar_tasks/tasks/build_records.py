"""What a build leaves for the next rebuild of the same output to carry entries over.

Per output: the layout (each entry's archive name and file_dep), the deflate implementation,
each zip entry's digest of its stored bytes (the stamp's), and which entries the build carried over
itself. A rebuild reads it (:mod:`mar_tasks.tasks.reuse_grant`); a no-op never does.

Kept out of doit's saved values on purpose: doit reads and decodes every task's record on
every run, and these were ~2.6 KB a model of 20 files, twice (doit keeps an action's returned
dict as the task's values and again as its result), against ~2.4 KB of doit's own state.
A record is tied to one build by a token saved in the task's values as well; a missing,
unreadable or foreign record only means that rebuild carries nothing over.

The records are files in ``.mar_tasks.builds/`` in the folder doit runs in (the dodo's, like
``.mar_tasks.listings``), one per output, named by a digest of its path relative to there.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

DIR_NAME = ".mar_tasks.builds"
FORMAT = "mar_tasks build record 1"


def new_token() -> str:
    """A build's token: tells its record from one an earlier or other build left."""
    import secrets
    return secrets.token_hex(8)


def record_path(target: str) -> Path:
    """Where the record of the output at `target` is kept: named by the target's path as
    a file_dep spells it (relative to this folder when inside it), so that a project
    copied or restored elsewhere finds its records."""
    from mar_tasks.tasks.fingerprints import dep_path
    spelled = dep_path(os.path.abspath(target), os.getcwd())
    key = hashlib.sha256(spelled.encode("utf-8", "surrogateescape")).hexdigest()
    return Path(DIR_NAME) / f"{key[:32]}.json"


MAX_BYTES = 256 << 20   # a record of a model of a million files is ~200 MB; more is not ours
_HEAD = ('{"format": "' + FORMAT.rsplit(" ", 1)[0]).encode()  # what every version starts with


def _regular_size(path: Path) -> Optional[int]:
    """The size of `path` if it is a regular file (never followed if a link), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _ours(path: Path) -> bool:
    """Whether the file at `path` may be replaced or removed: a record of any version of
    ours (only its first bytes are read), or empty (nothing to lose: a write a power loss
    cut short). Anything else, a link or a folder of that name, is the user's."""
    size = _regular_size(path)
    if size is None:
        return False
    if size == 0:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(_HEAD)) == _HEAD
    except OSError:
        return False


def _well_formed(data: Any) -> bool:
    """The record has the fields and types a rebuild reads (a file edited by hand could
    hold any JSON)."""
    if not isinstance(data, dict):
        return False
    entries, digests, carried = data.get("entries"), data.get("digests"), data.get("carried")
    return isinstance(data.get("deflate"), str) and isinstance(entries, list) \
        and all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
                for e in entries) \
        and isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values()) \
        and isinstance(carried, list) and all(isinstance(c, str) for c in carried)


def _in_real_folder(path: Path) -> bool:
    """The records' folder is a real folder here (never written through a link)."""
    try:
        return stat.S_ISDIR(os.lstat(path.parent).st_mode)
    except OSError:
        return False


def save(target: str, token: str, record: Dict[str, Any]) -> None:
    """Write the record of the build `token` of `target`, atomically and durably. Anything
    else found where it goes (or a link in place of the records' folder) is left alone, and
    said in one line: that output's rebuilds then carry nothing over. A folder we may not
    write to costs only that too."""
    from mar_tasks import atomic
    path = record_path(target)
    try:
        if not os.path.lexists(path.parent):
            path.parent.mkdir()
        if not _in_real_folder(path) or (os.path.lexists(path) and not _ours(path)):
            print(f"mar_tasks: {path} is not a build record mar_tasks wrote, so it is left "
                  f"alone and rebuilds of {target} carry nothing over; move it away",
                  file=sys.stderr)
            return
        with atomic.staged(path, is_dir=False) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "token": token, "target": target, **record}, f)
                f.flush()
                os.fsync(f.fileno())
    except OSError:
        pass


def load(target: str, token: Any) -> Optional[Dict[str, Any]]:
    """The record of build `token` of `target`, or None (missing, unreadable, malformed,
    another build's)."""
    from mar_tasks.formats import strict_json
    path = record_path(target)
    size = _regular_size(path)
    if not isinstance(token, str) or size is None or size > MAX_BYTES or not _in_real_folder(path):
        return None
    try:
        with open(path, "rb") as f:
            data = strict_json.loads(f.read(MAX_BYTES + 1))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("token") != token \
            or not _well_formed(data):
        return None
    return data


def archived_inputs(record: Dict[str, Any]) -> List[str]:
    """The file_deps a record's build archived, in its order (that of the stamps saved
    with the task's values)."""
    return [dep for _, dep in record["entries"]]


def remove(target: str) -> None:
    """Forget the record of `target` (``doit clean``), and the records' folder once empty."""
    path = record_path(target)
    if not _in_real_folder(path) or not _ours(path):
        return
    try:
        path.unlink()
        path.parent.rmdir()
    except OSError:
        pass
