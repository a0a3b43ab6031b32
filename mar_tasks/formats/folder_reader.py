"""Reading a no-archive folder through directory file descriptors, never by path.

Each folder is opened relative to its parent's descriptor with ``O_NOFOLLOW|O_DIRECTORY``
and each file with ``O_NOFOLLOW|O_NONBLOCK``, so a folder swapped for a link to somewhere
else while we read (say ``MAR-INF`` -> ``/tmp/evil``) fails to open instead of being read.
The walk keeps its own stack (no recursion) and stops at ``limits.MAX_DEPTH`` levels.
"""
from __future__ import annotations

import os
import stat
from typing import Iterator, List, Tuple

from mar_tasks.display import shown
from mar_tasks.errors import ArchiveError
from mar_tasks.plan import limits
from mar_tasks.regular_files import NotRegularFile

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
    | getattr(os, "O_CLOEXEC", 0)


def kind_of(mode: int) -> str:
    return ("symbolic link" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode)
            else "file" if stat.S_ISREG(mode) else "FIFO" if stat.S_ISFIFO(mode)
            else "socket or device")


def _names(fd: int, room: int) -> List[str]:
    """The sorted names in folder `fd`; ArchiveError past `room` (never all of a huge one)."""
    names = []
    with os.scandir(fd) as it:
        for entry in it:
            names.append(entry.name)
            if len(names) > room:
                raise ArchiveError(f"the folder holds more than {limits.MAX_ENTRIES:,} items; "
                                   "--verify reads at most that")
    return sorted(names)


def walk(root_fd: int) -> Iterator[Tuple[str, "os.stat_result"]]:
    """(path relative to the root, lstat result) of everything under the folder `root_fd`,
    depth first, holding one descriptor per level."""
    count = 0
    first = os.dup(root_fd)
    stack: List[Tuple[str, int, Iterator[str]]] = []
    try:
        stack.append(("", first, iter(_names(first, limits.MAX_ENTRIES))))
    except OSError:
        os.close(first)
        raise
    try:
        while stack:
            prefix, fd, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            count += 1
            if count > limits.MAX_ENTRIES:
                raise ArchiveError(f"the folder holds more than {limits.MAX_ENTRIES:,} items; "
                                   "--verify reads at most that")
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue  # gone while we list: not part of what we saw
            yield rel, st
            if not stat.S_ISDIR(st.st_mode):
                continue
            if len(stack) >= limits.MAX_DEPTH:
                raise ArchiveError(f"{shown(rel)}: more than {limits.MAX_DEPTH} folder levels; "
                                   "--verify reads at most that")
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise ArchiveError(f"cannot open folder {shown(rel)} ({exc.strerror}; was it "
                                   "replaced while reading?)") from None
            try:
                stack.append((rel + "/", child, iter(_names(child, limits.MAX_ENTRIES - count))))
            except OSError:
                os.close(child)
                raise
    finally:
        for _, fd, _ in stack:
            os.close(fd)


def read_file(root_fd: int, rel: str, limit: int) -> bytes:
    """The bytes of the regular file `rel` below `root_fd`, at most `limit` of them; every
    folder on the way and the file itself opened without following links."""
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            raise NotRegularFile(0, "is not a regular file", rel)
        os.set_blocking(file_fd, True)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ArchiveError(f"{shown(rel)} is larger than {limit:,} bytes")
    return data
