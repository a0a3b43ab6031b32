"""What a file listing depends on, as stat results that can be checked again later.

:func:`mar_tasks.plan.selection.select_files` records one check per folder it read and per
file named on its own, so a caller (the doit layer's remembered listings) can tell whether
the same listing would come out without walking again. A folder's listing can only change
if its mtime or ctime moves or its path leads to another folder (another inode).

(Not to be confused with the ownership stamp, :mod:`mar_tasks.formats.ownership_stamp`.)
"""
from __future__ import annotations

import os
import stat
from typing import Tuple

# For a folder read: ("d", path, st_dev, st_ino, st_mtime_ns, st_ctime_ns), taken before it
# was read. For a file named on its own: ("f", path, st_dev, st_ino, its file type, 0): its
# content is doit's to check, not ours.
StatCheck = Tuple[str, str, int, int, int, int]


def folder_check(path: str, st: os.stat_result) -> StatCheck:
    return ("d", path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def file_check(path: str, st: os.stat_result) -> StatCheck:
    return ("f", path, st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode), 0)


def still_holds(check: StatCheck) -> bool:
    """True if the path still stats as it did when `check` was taken."""
    kind, path, dev, ino, a, b = check
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_ino != ino or st.st_dev != dev:
        return False
    if kind == "d":
        return st.st_mtime_ns == a and st.st_ctime_ns == b
    return kind == "f" and stat.S_IFMT(st.st_mode) == a
