"""One MD5 per file content per run, shared by every task that depends on the file.

doit's MD5 checker hashes a file again for every task that depends on it and, for a file
touched without a content change, on every later run (its new mtime is never saved for an
up-to-date task). We keep an in-process record keyed by (path, size, mtime_ns): a file is
hashed at most once per run whatever the number of tasks, and :mod:`mar_tasks.uptodate`
writes refreshed mtimes back so the next run hashes nothing.

:func:`install` also routes doit's own ``get_file_md5`` (used when it saves state after a
build) through this record; the digest is the same MD5 hex, only memoised.
"""
from __future__ import annotations

import hashlib
import os
from typing import Dict, Tuple

_record: Dict[Tuple[str, int, int], str] = {}


def file_md5(path: str, st: "os.stat_result | None" = None) -> str:
    """MD5 hex of the file's content, hashed only if (path, size, mtime_ns) is new."""
    if st is None:
        st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    digest = _record.get(key)
    if digest is None:
        h = hashlib.md5()
        with open(path, "rb", buffering=0) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _record[key] = h.hexdigest()
    return digest


def install() -> None:
    """Make doit's MD5 checker use the shared record (same digests, computed once)."""
    import doit.dependency as dep

    if getattr(dep.get_file_md5, "__module__", "") != __name__:
        dep.get_file_md5 = file_md5
