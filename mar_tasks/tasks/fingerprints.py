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
    the mtime back, moves the ctime. For a no-archive folder, an entry per file and folder
    in it: (name, size, mtime_ns, mode, inode, ctime_ns), a folder's name ending in ``/``
    with size, mtime and ctime 0; nothing is followed, so a link or FIFO shows as itself.
    Its files all carry the same fixed mtime, so size and mtime alone would not tell a stale
    file put back by a restore (``rsync -a`` skips a file of the same size and mtime) from
    the one the build wrote. None if there is nothing at `path`."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    out: List[Any] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        rel = os.path.relpath(dirpath, path)
        for name in dirnames:
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue  # gone meanwhile: the next run sees the folder as it is then
            out.append([os.path.normpath(os.path.join(rel, name)) + "/", 0, 0, s.st_mode, s.st_ino, 0])
        for name in sorted(filenames):
            try:
                s = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            out.append([os.path.normpath(os.path.join(rel, name)), s.st_size, s.st_mtime_ns,
                        s.st_mode, s.st_ino, s.st_ctime_ns])
    return out


def still_the_output(now: Optional[List[Any]], saved: Any) -> bool:
    """Whether the output a rebuild carries from is still the one whose fingerprint is
    `saved`, while the rebuild runs. A no-archive rebuild hard-links the unchanged files
    of the folder it replaces, which moves their ctime, so its entries are compared without
    it; an archive file is compared whole."""
    if now is None or not now or not isinstance(now[0], list):
        return now == saved
    return isinstance(saved, list) and len(saved) == len(now) and all(
        isinstance(s, list) and s[:5] == n[:5] for s, n in zip(saved, now))
