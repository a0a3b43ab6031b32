"""What a rebuild may carry over from the output it replaces, entry by entry.

The doit task vouches for two things (:class:`Reuse`): the output at the target is still
the one it wrote (its saved fingerprint holds), and which entries' inputs are the ones that
output archived under the same name. This module adds what can be checked in the output
itself: a zip's stamp must be the one made of its central directory and of the per-entry
digests the doit task saved with it (so those digests are the entries' stored bytes'), and
an entry's local header must agree with the central directory (name, method, CRC, sizes)
and hold its size of input; a no-archive file must be a regular file of the input's size. Anything else is
built from its input. The old output is only read, never written. A zip whose stamp is of
another kind than the one written now (``content-sha256``, the release before's) serves
nothing: its saved digests are of that kind (see :mod:`.ownership_stamp`).
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Optional, Tuple

from mar_tasks.errors import ArchiveError
from mar_tasks.formats.ownership_stamp import ZIP_KIND, ContentDigest, stamp_kind
from mar_tasks.formats.zip_reader import (ZipEntry, _local, end_records_bytes, local_header_bytes,
                                          local_problem, read_layout)
from mar_tasks.plan.selection import Entry


@dataclass(frozen=True)
class Reuse:
    """A rebuild's leave to carry entries over (made by :mod:`mar_tasks.tasks.reuse_grant`).

    `output_holds` says the target is still the output written by the build this one
    follows; `unchanged` says an entry's input is the one that build archived under the
    entry's name; `digests` are the old zip's entries' digests of their stored bytes, as
    saved when it was written (its stamp is checked against them).
    """

    output_holds: Callable[[], bool]
    unchanged: Callable[[Entry], bool]
    digests: Dict[str, str]


class OldZip:
    """The archive being replaced, open for reading: :meth:`find` an entry's data in it."""

    def __init__(self, f: BinaryIO, digests: Dict[str, str]) -> None:
        self.f = f
        layout = read_layout(f, "the archive being replaced")
        # Only from an archive whose stamp is of the kind this build writes: the saved
        # digests are of the old archive's kind, and one archive never mixes two kinds
        # (an archive of the release before is built again in full).
        if stamp_kind(layout.comment) != ZIP_KIND:
            raise ArchiveError("the archive being replaced has another kind of stamp")
        stamp = ContentDigest(ZIP_KIND)
        # Each entry's local header as the stamp vouches for it, kept for find().
        self.locals: Dict[str, Tuple[tuple, bytes, bytes, int]] = {}
        for e in layout.entries:
            try:
                stamp.add_entry(bytes.fromhex(digests[e.name]))
            except (KeyError, ValueError, TypeError):
                raise ArchiveError("the digests saved do not cover the archive being replaced") from None
            local = _local(f, e.offset)   # the stamp covers the local headers and end records too
            if local is None:
                raise ArchiveError("the archive being replaced lacks a local header")
            stamp.add_header(local_header_bytes(*local[:3]))
            self.locals[e.name] = local
        stamp.add_header(end_records_bytes(f, layout))
        f.seek(layout.cd_offset)
        if layout.comment != stamp.stamp_for_index(hashlib.sha256(f.read(layout.cd_size)).digest()):
            raise ArchiveError("the archive being replaced is not stamped by mar_tasks")
        self.digests = digests
        self.cd_offset = layout.cd_offset
        self.entries: Dict[str, ZipEntry] = {e.name: e for e in layout.entries}

    def fileno(self) -> int:
        return self.f.fileno()

    def find(self, entry: Entry) -> Optional[Tuple[int, ZipEntry]]:
        """(data offset, central directory entry) of `entry`'s name, if the archive holds
        it as a plain stored or deflated file of the input's size."""
        e = self.entries.get(entry.arcname)
        if e is None or e.usize != entry.size or e.method not in (0, 8) or e.flags & 0x9:
            return None
        h, raw, extra, data_at = self.locals[e.name]
        if local_problem(e, h, raw, extra) is not None or data_at + e.csize > self.cd_offset:
            return None
        return data_at, e


def open_old_zip(target: Path, digests: Dict[str, str]) -> Optional[OldZip]:
    """The zip at `target` for carrying entries over, or None if it cannot serve; `digests`
    are its entries' digests of their stored bytes, as saved when it was written."""
    try:
        f = open(target, "rb", buffering=0)  # (unbuffered: block_copy may move its position)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ArchiveError("not a file")
        return OldZip(f, digests)
    except (ArchiveError, OSError, ValueError):
        f.close()
        return None


def old_folder_file(target: Path, entry: Entry) -> Optional[Path]:
    """`entry`'s file in the no-archive folder being replaced, if it is a regular file of
    the input's size."""
    path = target / entry.arcname
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) and st.st_size == entry.size else None
