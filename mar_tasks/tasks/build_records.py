"""What a build leaves for the next rebuild of the same output to carry entries over.

Per output: the layout (each entry's archive name and file_dep), the deflate implementation,
the SHA-256 of each zip entry's stored bytes, and which entries the build carried over
itself. A rebuild reads it (:mod:`mar_tasks.tasks.reuse_grant`); a no-op never does.

Kept out of doit's saved values on purpose: doit reads and decodes every task's record on
every run, and these were ~2.6 KB a model of 20 files, twice (doit keeps an action's returned
dict as the task's values and again as its result), against ~2.4 KB of doit's own state.
A record is tied to one build by a token saved in the task's values as well; a missing,
unreadable or foreign record only means that rebuild carries nothing over.

The records are files in ``.mar_tasks.builds/`` in the folder doit runs in (the dodo's, like
``.mar_tasks.listings``), one per output, named by a digest of its absolute path.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Dict, Optional

DIR_NAME = ".mar_tasks.builds"
FORMAT = "mar_tasks build record 1"


def new_token() -> str:
    """A build's token: tells its record from one an earlier or other build left."""
    import secrets
    return secrets.token_hex(8)


def record_path(target: str) -> Path:
    """Where the record of the output at `target` is kept."""
    key = hashlib.sha256(os.path.abspath(target).encode("utf-8", "surrogateescape")).hexdigest()
    return Path(DIR_NAME) / f"{key[:32]}.json"


def _read(path: Path) -> Optional[Dict[str, Any]]:
    """A record file's content; None unless it is a regular file holding one of ours."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def save(target: str, token: str, record: Dict[str, Any]) -> None:
    """Write the record of the build `token` of `target`, atomically. Anything else found
    where it goes is left alone (and this output's next rebuild carries nothing over), as
    is a folder we may not write to."""
    from mar_tasks import atomic
    path = record_path(target)
    try:
        path.parent.mkdir(exist_ok=True)
        if os.path.lexists(path) and _read(path) is None:
            print(f"mar_tasks: {path} is not a build record mar_tasks wrote, so it is left "
                  f"alone and rebuilds of {target} carry nothing over; move it away",
                  file=sys.stderr)
            return
        with atomic.staged(path, is_dir=False) as tmp:
            tmp.write_text(json.dumps({"format": FORMAT, "token": token, "target": target, **record}))
    except OSError:
        pass


def load(target: str, token: Any) -> Optional[Dict[str, Any]]:
    """The record of build `token` of `target`, or None (missing, unreadable, another
    build's)."""
    data = _read(record_path(target))
    return data if data is not None and isinstance(token, str) and data.get("token") == token \
        else None


def remove(target: str) -> None:
    """Forget the record of `target` (``doit clean``), and the records' folder once empty."""
    path = record_path(target)
    if _read(path) is None:
        return
    try:
        path.unlink()
        path.parent.rmdir()
    except OSError:
        pass
