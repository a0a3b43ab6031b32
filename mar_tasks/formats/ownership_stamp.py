"""Recognising output that mar_tasks wrote, without any database; and the stamp that
lets ``mar-inspect --verify`` tell whether an archive changed after it was written.

Zip archives carry ``mar_tasks content-sha256 <hex>`` as the zip comment, tgz archives in the
gzip header's comment, and no-archive folders name ``mar_tasks`` as the manifest's
``archiverVersion``. The doit tasks replace such outputs freely; any other file at the
target needs force, exactly like the CLI.

The digest covers every content byte: for a zip, the SHA-256 of each entry's stored data,
in order, and the central directory (which the verifier checks the local headers against);
for a tgz, every byte after the gzip header (the deflate stream and the trailer). A zip's
per-entry digests let a rebuild carry an entry over with its digest, without reading it. It is unkeyed: it detects accidental or careless change
(a byte flipped, a file edited with its CRC-32 kept), not tampering: anyone can re-stamp.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Optional, Tuple

from mar_tasks.formats import gzip_layout, strict_json, zip_layout
from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.regular_files import read_regular
from mar_tasks.version import ARCHIVER_VERSION

STAMP_PREFIX = b"mar_tasks "
STAMP_KIND = b"content-sha256 "   # older stamps (a digest of headers only) lack this word


def stamp_for(digest: str) -> bytes:
    """The zip comment / gzip comment that marks an archive as written by mar_tasks."""
    return STAMP_PREFIX + STAMP_KIND + digest.encode("ascii")


STAMP_LEN = len(stamp_for("0" * 64))


class ContentDigest:
    """What the stamp records, fed by the writer as it writes and by the verifier as it
    reads: `data` gets the SHA-256 of each zip entry's stored bytes in order
    (:meth:`add_entry`; a tgz: every byte after the gzip header),
    `index` a zip's central directory (which the verifier reads before the data)."""

    def __init__(self) -> None:
        self.data = hashlib.sha256()
        self.index = hashlib.sha256()

    def add_entry(self, entry_digest: bytes) -> None:
        """A zip entry's part: the SHA-256 of its stored bytes (see module docstring)."""
        self.data.update(entry_digest)

    def hexdigest(self, index: Optional[bytes] = None) -> str:
        """The stamp's digest; `index`: the central directory's sha256 when known already."""
        return hashlib.sha256(self.data.digest() + (index or self.index.digest())).hexdigest()

    def stamp(self) -> bytes:
        return stamp_for(self.hexdigest())

    def stamp_for_index(self, index: bytes) -> bytes:
        """The stamp when the central directory's sha256 was computed apart."""
        return stamp_for(self.hexdigest(index))


def stamp_problem(stamp: bytes, actual: Optional[str]) -> Optional[str]:
    """Why `stamp` (an archive's comment, starting with STAMP_PREFIX) does not vouch for an
    archive whose content digest is `actual`; None if it does."""
    said = stamp[len(STAMP_PREFIX):]
    if not said.startswith(STAMP_KIND):
        return ("the archive's mar_tasks stamp is from an older mar_tasks that did not cover "
                "the data; rebuild the archive")
    if actual is not None and said[len(STAMP_KIND):].decode("ascii", "replace") != actual:
        return "the archive does not match its mar_tasks stamp: it was modified after it was written"
    return None


def zip_end_record(path: Path) -> Optional[Tuple[tuple, bytes, bytes]]:
    """(EOCD fields, its comment, the bytes before it in the tail) of a zip file, or None.

    Only the file's tail is read. The last end record whose comment fits in the file wins,
    so bytes appended after it (a hand edit) do not hide it. The bytes before it hold the
    zip64 locator, when there is one.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_len = min(size, zip_layout.TAIL_MAX)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
    at = zip_layout.find_end_record(tail)
    if at is None:
        return None
    fields = zip_layout.EOCD.unpack_from(tail, at)
    start = at + zip_layout.EOCD.size
    return fields, tail[start:start + fields[7]], tail[:at]


def zip_comment(path: Path) -> Optional[bytes]:
    """The comment of a zip file (None if not a zip)."""
    record = zip_end_record(path)
    return record[1] if record else None


def gzip_comment(path: Path) -> Optional[bytes]:
    """The FCOMMENT field of a gzip file's header (None if absent or not gzip)."""
    with open(path, "rb") as f:
        try:
            header = gzip_layout.read_header(f)
        except gzip_layout.HeaderError:
            return None
    return header.comment if header.flags & gzip_layout.FCOMMENT else None


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
            doc = strict_json.loads(read_regular(path / MANIFEST_ARCNAME))
        except (OSError, ValueError):  # (strict: a manifest nested without end is not ours)
            return False
        version = doc.get("archiverVersion", "") if isinstance(doc, dict) else ""
        return isinstance(version, str) and version.split(" ")[0] == ARCHIVER_VERSION.split(" ")[0]
    return stamp_of(path) is not None
