"""Opening a path only if it is a regular file: never blocking on a FIFO, never following
a link, never touching a device. Used wherever we read something we did not choose
(an existing output, a folder handed to ``mar-inspect``)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
    | getattr(os, "O_BINARY", 0)


class NotRegularFile(OSError):
    """The path is a link, FIFO, socket, device or folder."""


def open_regular(path: "Path | str") -> BinaryIO:
    """Open `path` for reading if it is a regular file, else raise :class:`NotRegularFile`.

    O_NONBLOCK makes opening a FIFO return at once; fstat then refuses it before any read.
    """
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegularFile(exc.errno, "is a symbolic link", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(0, "is not a regular file", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: "Path | str", limit: int = 1 << 20) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (more: ValueError)."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data
