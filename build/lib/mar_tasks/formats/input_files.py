"""Reading input files in fixed chunks, and noticing files that change under us.

A file written to while we archive it would give an archive whose content matches no
moment of the file; we re-check size and mtime after reading and fail instead. Once the
archive is written, every input is checked again: doit records the inputs' state after the
build, so one changed since it was read would be recorded as archived when it is not, and
never rebuilt.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator, Optional

from mar_tasks.formats.deflate import CHUNK
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.selection import Entry


def read_chunks(entry: Entry, progress: Optional[Callable[[int], None]] = None) -> Iterator[bytes]:
    """Yield the file's bytes in CHUNK pieces; raise ArchiveError if it changed meanwhile."""
    try:
        # Buffered: read(CHUNK) returns a full chunk unless at end of file (a raw read may
        # return less), and chunk boundaries decide the deflate bytes.
        src = open(entry.source, "rb")
    except OSError as exc:
        raise ArchiveError(f"cannot read {entry.source} ({exc.strerror}); check it") from None
    with src:
        total = 0
        while True:
            data = src.read(CHUNK)
            if not data:
                break
            total += len(data)
            if total > entry.size:
                break
            if progress is not None:
                progress(len(data))
            yield data
        check_unchanged(entry, os.fstat(src.fileno()), total)


def check_unchanged(entry: Entry, st: os.stat_result, read: int) -> None:
    """Fail if `read` bytes or the file's size/mtime differ from when it was selected."""
    if read != entry.size or st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
        raise ArchiveError(_changed(entry))


def _changed(entry: Entry) -> str:
    return (f"{entry.source} changed while it was being archived; run the build again "
            "once nothing is writing to it")


def same_reads(a: Iterable[Entry], b: Iterable[Entry]) -> bool:
    """True if two selections name the same files with the same size and mtime: what was
    hashed (or fetched against) is what was archived."""
    return [(e.arcname, e.size, e.mtime_ns) for e in a] == [(e.arcname, e.size, e.mtime_ns) for e in b]


def check_all_unchanged(entries: Iterable[Entry]) -> None:
    """Fail if any input changed (or went) since it was read (see module docstring)."""
    for entry in entries:
        try:
            st = os.stat(entry.source)
        except OSError:
            raise ArchiveError(_changed(entry)) from None
        check_unchanged(entry, st, entry.size)
