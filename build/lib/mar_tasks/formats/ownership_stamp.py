"""Recognising output that mar_tasks wrote, without any database.

Zip archives carry ``mar_tasks <sha256>`` as the zip comment, tgz archives in the gzip
header's comment, and no-archive folders name ``mar_tasks`` as the manifest's
``archiverVersion``. The doit tasks replace such outputs freely; any other file at the
target needs force, exactly like the CLI.
"""
from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path
from typing import Optional, Tuple

from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.regular_files import read_regular
from mar_tasks.version import ARCHIVER_VERSION

_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR_SIZE = 20
STAMP_PREFIX = b"mar_tasks "


def stamp_for(digest: str) -> bytes:
    """The zip comment / gzip comment that marks an archive as written by mar_tasks."""
    return STAMP_PREFIX + digest.encode("ascii")


def zip_end_record(path: Path) -> Optional[Tuple[tuple, bytes, bytes]]:
    """(EOCD fields, its comment, the bytes before it in the tail) of a zip file, or None.

    Only the file's tail is read. The last end record whose comment fits in the file wins,
    so bytes appended after it (a hand edit) do not hide it. The bytes before it hold the
    zip64 locator, when there is one.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_len = min(size, _ZIP64_LOCATOR_SIZE + _EOCD.size + 0xFFFF)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:
        if at + _EOCD.size <= len(tail):
            fields = _EOCD.unpack_from(tail, at)
            end = at + _EOCD.size + fields[7]
            if end <= len(tail):
                return fields, tail[at + _EOCD.size:end], tail[:at]
        at = tail.rfind(b"PK\x05\x06", 0, at)
    return None


def zip_comment(path: Path) -> Optional[bytes]:
    """The comment of a zip file (None if not a zip)."""
    record = zip_end_record(path)
    return record[1] if record else None


def gzip_comment(path: Path) -> Optional[bytes]:
    """The FCOMMENT field of a gzip file's header (None if absent or not gzip)."""
    with open(path, "rb") as f:
        head = f.read(10)
        if len(head) < 10 or head[:3] != b"\x1f\x8b\x08":
            return None
        flags = head[3]
        if flags & 4:  # FEXTRA
            (xlen,) = struct.unpack("<H", f.read(2))
            f.read(xlen)
        if flags & 8:  # FNAME
            while f.read(1) not in (b"\0", b""):
                pass
        if not flags & 16:
            return None
        out = bytearray()
        while len(out) < 4096:
            c = f.read(1)
            if c in (b"\0", b""):
                break
            out += c
        return bytes(out)


def stamp_of(path: Path) -> Optional[bytes]:
    """Our stamp from an archive file, or None."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        comment = zip_comment(path) if magic == b"PK" else gzip_comment(path) if magic == b"\x1f\x8b" else None
    except OSError:
        return None
    return comment if comment and comment.startswith(STAMP_PREFIX) else None


def is_ours(path: Path) -> bool:
    """True if `path` (file or no-archive folder) was written by mar_tasks.

    Only a regular file or a real folder is opened: a FIFO at the target must not block us.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return False
    if stat.S_ISDIR(mode):
        try:
            doc = json.loads(read_regular(path / MANIFEST_ARCNAME).decode("utf-8"))
        except (OSError, ValueError):
            return False
        version = doc.get("archiverVersion", "") if isinstance(doc, dict) else ""
        return isinstance(version, str) and version.split(" ")[0] == ARCHIVER_VERSION.split(" ")[0]
    return stamp_of(path) is not None
