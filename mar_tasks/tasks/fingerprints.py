"""How the doit layer names and recognises files: a path spelled as a hand-written file_dep,
and the fingerprint of an output (what the up-to-date check and a rebuild's carry-over
compare with the one saved when the output was written)."""
from __future__ import annotations

import os
import stat
from typing import Any, List, Optional


def dep_path(path: str, cwd: str) -> str:
    """A file path spelled as a hand-written file_dep or target would be: relative under
    the current folder (doit's: the dodo's), absolute elsewhere."""
    return path[len(cwd) + 1:] if path.startswith(cwd + os.sep) else path


def output_fingerprint(path: str) -> Optional[List[Any]]:
    """An archive file's (size, mtime_ns, inode, ctime_ns): any write, even one that puts
    the mtime back, moves the ctime. For a no-archive folder, every file's (name, size,
    mtime_ns). None if there is nothing at `path`."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    out: List[Any] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            s = os.stat(full)
            out.append([os.path.relpath(full, path), s.st_size, s.st_mtime_ns])
    return out
