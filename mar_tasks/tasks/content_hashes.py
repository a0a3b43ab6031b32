"""One MD5 per file content per run, for our own up-to-date check only.

doit's MD5 checker hashes a file again for every task that depends on it and, for a file
touched without a content change, on every later run (its new mtime is never saved for an
up-to-date task). :mod:`mar_tasks.tasks.uptodate` asks :func:`file_md5` instead, which keeps a
record keyed by (path, size, mtime_ns, inode, ctime_ns), and writes refreshed mtimes back so
the next run hashes nothing. The ctime is in the key because an edit can put the mtime back
(``touch -r``); the ctime cannot be set.

Nothing here touches doit itself (its own hashing after a build is left as it is), starts
a thread or registers a hook. A digest is remembered only for a file whose ctime is more
than :data:`RACY_NS` older than the moment it was hashed: a file rewritten within the file
system's timestamp granularity could otherwise keep its key with other content (the
"racily clean" problem git solves the same way).
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Dict, Tuple

Key = Tuple[str, int, int, int, int]
RACY_NS = 2_000_000_000  # coarser than any file system's mtime granularity we know (FAT: 2 s)

_record: Dict[Key, str] = {}


def file_md5(path: str) -> str:
    """MD5 hex of the file's content, hashed only if (path, size, mtime_ns, inode,
    ctime_ns) is new."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    digest = _record.get(key)
    if digest is not None:
        return digest
    started = time.time_ns()
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        after = os.fstat(f.fileno())
    digest = h.hexdigest()
    if (after.st_size, after.st_mtime_ns, after.st_ino, after.st_ctime_ns) == key[1:] \
            and key[4] < started - RACY_NS:
        _record[key] = digest
    return digest
