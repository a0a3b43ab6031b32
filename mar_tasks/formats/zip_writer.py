"""Where the zip (``.mar``) is written.

A small streaming zip writer instead of :mod:`zipfile`, because we need what zipfile cannot
do together: deflate chunks on several threads, fixed entry times and permissions
(reproducible bytes), zip64 only where needed, and local headers that carry the real sizes
(Java's ``ZipInputStream``, which TorchServe unzips with, reads the local headers).
Each local header is written first and patched in place once the entry's CRC and size
are known; the file being written is a private temporary file, so seeking is safe.

Entries of :data:`ALIGN_FROM` bytes or more start their data on a 4 KiB boundary, padded
by an extra field in the local header (zipalign's 0xD935 record), so a file system that
shares blocks (XFS, btrfs) can share theirs: a stored entry's data is copied from its input
file with :mod:`.block_copy`, and an entry a rebuild carries over is copied from the old
archive the same way (:meth:`ZipWriter.write_carried`).
"""
from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from mar_tasks.formats.deflate import (CHUNK, STORE_RATIO, Done, ParallelDeflate, crc32, crc32_combine,
                                       deflate_all, deflate_parts)
from mar_tasks.errors import ArchiveError
from mar_tasks.formats import zip_layout as zl
from mar_tasks.formats.ownership_stamp import (PIECE, ContentDigest, entry_digest, piece_digest, stamp_for,
                                              tree_digest)
from mar_tasks.plan.selection import Entry
from mar_tasks.formats.block_copy import copy_range, pread
from mar_tasks.formats.input_files import check_unchanged, read_chunks

STORED, DEFLATED = zl.STORED, zl.DEFLATED
ZIP64_LIMIT = zl.MAX32
# Entries at least this large get zip64 sizes up front: deflate may grow data slightly, and
# the choice must be made before the compressed size is known.
ZIP64_FROM = int(ZIP64_LIMIT * 0.99)
UTF8_FLAG = zl.FLAG_UTF8
MADE_BY = (3 << 8) | zl.VERSION_ZIP64   # Unix, spec 4.5
ALIGN_FROM = CHUNK        # entries this large are aligned (small ones are not worth 4 KiB)
WRITEBACK = 32 << 20      # deflated output is handed to the kernel's writeback in such steps
NO_WRITEBACK = 1 << 62     # `_flushed` of a writer that starts no writeback (past any offset)


@dataclass
class _Record:
    name: bytes
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    mode: int
    zip64_local: bool


def _mode(executable: bool) -> int:
    return 0o100755 if executable else 0o100644


class ZipWriter:
    """Writes entries to a seekable binary file; call :meth:`finish` once at the end."""

    def __init__(self, fp: BinaryIO, dos_time: int, dos_date: int,
                 deflater: ParallelDeflate, progress: Optional[Callable[[int], None]] = None,
                 writeback: bool = False):
        self.fp = fp
        self.dos_time = dos_time
        self.dos_date = dos_date
        self.deflater = deflater
        self.progress = progress or (lambda n: None)
        self.records: List[_Record] = []
        self.digest = ContentDigest()   # the stamp: every entry's stored bytes, then the CD
        self.entry_digests: Dict[str, str] = {}  # each entry's digest of its stored bytes
        # where the writeback this writer started ends (see _written); never, unless asked
        self._flushed = 0 if writeback else NO_WRITEBACK

    # -- local headers -------------------------------------------------------------------
    def _local_header(self, rec: _Record) -> bytes:
        needed = zl.VERSION_ZIP64 if rec.zip64_local else zl.VERSION_DEFAULT
        if rec.zip64_local:
            extra = zl.zip64_extra([rec.usize, rec.csize])
            csize = usize = ZIP64_LIMIT
        else:
            extra, csize, usize = b"", rec.csize, rec.usize
        if rec.usize >= ALIGN_FROM:
            extra += zl.align_extra(rec.offset + zl.LOCAL.size + len(rec.name) + len(extra))
        return zl.LOCAL.pack(zl.LOCAL_SIG, needed, rec.flags, rec.method, self.dos_time,
                           self.dos_date, rec.crc, csize, usize, len(rec.name),
                           len(extra)) + rec.name + extra

    def _new_record(self, arcname: str, usize: int, executable: bool) -> _Record:
        name = arcname.encode("utf-8")
        flags = 0 if name.isascii() else UTF8_FLAG
        return _Record(name, flags, STORED, 0, 0, usize, self.fp.tell(), _mode(executable),
                       usize >= ZIP64_FROM)

    # -- entries -------------------------------------------------------------------------
    def write_bytes(self, arcname: str, data: bytes, compression: str = "auto",
                    executable: bool = False) -> None:
        """Add an in-memory member (the manifest, small files)."""
        rec = self._new_record(arcname, len(data), executable)
        rec.crc = crc32(data)
        payload = data
        if compression != "store":
            packed = deflate_all(data)
            if compression == "deflate" or len(packed) < len(data):
                rec.method, payload = DEFLATED, packed
        rec.csize = len(payload)
        self.fp.write(self._local_header(rec))
        self.fp.write(payload)
        self._add(arcname, entry_digest(payload, self.digest.kind))
        self.records.append(rec)

    def _add(self, arcname: str, stored_digest: bytes) -> None:
        self.digest.add_entry(stored_digest)
        self.entry_digests[arcname] = stored_digest.hex()

    def write_file(self, entry: Entry, compression: str = "auto") -> None:
        """Stream a file from disk into the archive."""
        if entry.size <= CHUNK:
            self.write_bytes(entry.arcname, b"".join(read_chunks(entry, self.progress)), compression,
                             entry.executable)
            return
        rec = self._new_record(entry.arcname, entry.size, entry.executable)
        if compression == "store":
            self._copy_stored(rec, entry)
            return
        chunks = read_chunks(entry, self.progress)
        first = next(chunks, b"")
        probe = deflate_parts(first, False)
        if compression == "deflate" or sum(map(len, probe)) < STORE_RATIO * len(first):
            rec.method = DEFLATED
        if rec.method == STORED:
            chunks.close()  # read again on the pool's threads
            self._copy_stored(rec, entry, counted=len(first))
            return
        self.fp.write(self._local_header(rec))
        crc = crc32(first)

        def rest() -> Iterator[bytes]:
            nonlocal crc
            for data in chunks:
                crc = crc32(data, crc)
                yield data

        # The first chunk's deflate is the probe; the rest of the stream follows it (with
        # the first chunk as history) and ends with a final block even when empty.
        pieces: Iterator[bytes] = itertools.chain(probe, self.deflater.stream(rest(), first))
        csize = 0
        # The stamp's pieces are hashed on the deflate pool, beside the deflate itself.
        stored = self.digest.entry_hasher(self.deflater.submit, self.deflater.in_flight)
        for piece in pieces:
            self.fp.write(piece)
            stored.update(piece)
            csize += len(piece)
            self._written(rec.offset + csize)
        self._add(entry.arcname, stored.digest())
        rec.crc, rec.csize = crc, csize
        if not rec.zip64_local and csize >= ZIP64_LIMIT:
            raise ArchiveError(f"{entry.source} grew past 4 GiB when compressed; use --compression store")
        end = self.fp.tell()
        self.fp.seek(rec.offset)  # patch the real CRC and sizes into the local header
        self.fp.write(self._local_header(rec))
        self.fp.seek(end)
        self.records.append(rec)

    def _written(self, end: int) -> None:
        """Start the kernel's writeback of the data written before `end`, less the last
        :data:`WRITEBACK` bytes (still in our buffer, or soon patched), every WRITEBACK;
        only when the writer was told that the rename publishing this file writes it back.

        ext4 writes back a file renamed over another (``auto_da_alloc``, which keeps a
        crash from leaving a renamed but empty archive) in the rename itself, ~0.6 s for
        2 GiB on one core after all the deflate is done. Started here, on this thread while
        the pool deflates, that work overlaps the deflate; nothing is waited for
        (``POSIX_FADV_DONTNEED`` starts the writeback of dirty pages and drops only pages
        already clean). Elsewhere (XFS, a new name) the pages are better left to the
        kernel's flusher, after the build: starting it here only adds to the build.
        """
        if end - self._flushed < 2 * WRITEBACK:
            return
        upto = end - WRITEBACK
        try:
            os.posix_fadvise(self.fp.fileno(), self._flushed, upto - self._flushed, os.POSIX_FADV_DONTNEED)
        except (AttributeError, OSError):  # no posix_fadvise (macOS, Windows): left to the kernel
            self._flushed = NO_WRITEBACK
            return
        self._flushed = upto

    def _place(self, rec: _Record, src: int, src_at: int) -> int:
        """Write `rec`'s local header, then copy its csize bytes of data from descriptor
        `src` at `src_at` (in the kernel: see :mod:`.block_copy`); return the bytes copied."""
        self.fp.write(self._local_header(rec))
        self.fp.flush()
        data_at = self.fp.tell()
        done = 0
        # In steps, so that where the publishing rename would write the file back (a
        # rebuild over an archive on ext4: see _written) that writeback runs while the
        # kernel copies the rest, not all of it inside the rename at the end.
        step = rec.csize if self._flushed >= NO_WRITEBACK else WRITEBACK
        while done < rec.csize:
            want = min(step, rec.csize - done)
            n = copy_range(src, src_at + done, self.fp.fileno(), data_at + done, want)
            done += n
            self._written(data_at + done)
            if n < want:
                break  # the source ended early: the caller says so
        self.fp.seek(data_at + done)
        return done

    def _copy_stored(self, rec: _Record, entry: Entry, counted: int = 0) -> None:
        """A stored entry: the data copied by the kernel (blocks shared where the file
        system can), and read only for its CRC-32 and the stamp's digest, a piece at a time
        on the pool's threads (each reads, hashes and CRCs its piece: no bytes pass through
        this thread), while the kernel copies. `counted`: bytes already shown as progress."""
        rec.csize = entry.size
        try:
            src = open(entry.source, "rb", buffering=0)
        except OSError as exc:
            raise ArchiveError(f"cannot read {entry.source} ({exc.strerror}); check it") from None
        pending: Deque[Any] = deque()
        offsets = iter(range(0, entry.size, PIECE))
        pieces: List[bytes] = []
        crc = done = 0
        kind = self.digest.kind

        # Without pread (Windows) a read moves the file's position: one reader, this thread.
        submit = self.deflater.submit if hasattr(os, "pread") else lambda fn, *a: Done(fn(*a))

        def ahead(count: int) -> None:
            for at in itertools.islice(offsets, count):
                pending.append(submit(_read_piece, fd, at, min(PIECE, entry.size - at), kind))

        with src:
            fd = src.fileno()
            try:
                ahead(self.deflater.in_flight)
                self.fp.write(self._local_header(rec))  # (its CRC is patched in below)
                self.fp.flush()
                data_at = self.fp.tell()
                copied = copy_range(fd, 0, self.fp.fileno(), data_at, rec.csize)
                while pending:
                    digest, piece_crc, n = pending.popleft().result()
                    ahead(1)
                    pieces.append(digest)
                    crc = crc32_combine(crc, piece_crc, n)
                    done += n
                    self.progress(max(0, n - counted))
                    counted = max(0, counted - n)
            finally:
                _settle(pending)  # no thread may read `fd` once it is closed
            check_unchanged(entry, os.fstat(fd), min(done, copied))
        rec.crc = crc
        self.fp.seek(rec.offset)
        self.fp.write(self._local_header(rec))
        self.fp.seek(data_at + copied)
        self._add(entry.arcname, tree_digest(pieces, kind))
        self.records.append(rec)

    def write_carried(self, entry: Entry, src: int, data_at: int, method: int, crc: int,
                      csize: int, stored_digest: str) -> None:
        """Add `entry` as the compressed bytes an earlier archive (open as `src`) holds for
        it at `data_at`, with their method, CRC, size and digest (which that archive's stamp
        vouches for): nothing read or deflated again."""
        rec = self._new_record(entry.arcname, entry.size, entry.executable)
        rec.method, rec.crc, rec.csize = method, crc, csize
        if self._place(rec, src, data_at) != csize:
            raise ArchiveError(f"the archive being replaced ended inside {entry.arcname} while "
                               "it was read; run the build again")
        self._add(entry.arcname, bytes.fromhex(stored_digest))
        self.progress(entry.size)
        self.records.append(rec)

    # -- central directory ---------------------------------------------------------------
    def finish(self) -> bytes:
        """Write the central directory and the end records; return the comment written.

        The comment is our ownership stamp (:mod:`mar_tasks.formats.ownership_stamp`).
        """
        cd_offset = self.fp.tell()
        h = self.digest
        for rec in self.records:   # each as it stands in the file (the last patch wrote this)
            h.add_header(self._local_header(rec))
        for rec in self.records:
            fields = []
            usize, csize, offset = rec.usize, rec.csize, rec.offset
            if rec.zip64_local or usize >= ZIP64_LIMIT:
                fields.append(usize)
                usize = ZIP64_LIMIT
            if rec.zip64_local or csize >= ZIP64_LIMIT:
                fields.append(csize)
                csize = ZIP64_LIMIT
            if offset >= ZIP64_LIMIT:
                fields.append(offset)
                offset = ZIP64_LIMIT
            extra = zl.zip64_extra(fields)
            needed = zl.VERSION_ZIP64 if fields else zl.VERSION_DEFAULT
            blob = zl.CENTRAL.pack(zl.CENTRAL_SIG, MADE_BY, needed, rec.flags, rec.method,
                                 self.dos_time, self.dos_date, rec.crc, csize, usize,
                                 len(rec.name), len(extra), 0, 0, 0, rec.mode << 16,
                                 offset) + rec.name + extra
            h.index.update(blob)
            self.fp.write(blob)
        cd_size = self.fp.tell() - cd_offset
        count = len(self.records)
        # The stamp's length is fixed by its kind; its digest covers the end records before it.
        blank = stamp_for("0" * 64, h.kind)
        end = b""
        # A directory offset such as 0x06054b50 spells "PK\5\6" in the end record, and zipfile
        # and unzip would take it for the record: then the saturated fields of zip64 are used.
        if count >= 0xFFFF or cd_size >= ZIP64_LIMIT or cd_offset >= ZIP64_LIMIT or zl.spells_signature(
                zl.EOCD.pack(zl.EOCD_SIG, 0, 0, count, count, cd_size, cd_offset, len(blank)) + blank):
            z64_at = self.fp.tell()
            end = zl.Z64_EOCD.pack(zl.Z64_EOCD_SIG, zl.Z64_EOCD_BODY, MADE_BY, zl.VERSION_ZIP64, 0, 0,
                                   count, count, cd_size, cd_offset) \
                + zl.Z64_LOCATOR.pack(zl.Z64_LOCATOR_SIG, 0, z64_at, 1)
            count16, size32, off32 = 0xFFFF, ZIP64_LIMIT, ZIP64_LIMIT
        else:
            count16, size32, off32 = count, cd_size, cd_offset
        end += zl.EOCD.pack(zl.EOCD_SIG, 0, 0, count16, count16, size32, off32, len(blank))
        h.add_header(end[:-2])   # all but the comment's length
        comment = h.stamp()
        self.fp.write(end + comment)
        return comment


def _read_piece(fd: int, at: int, n: int, kind: bytes) -> Tuple[bytes, int, int]:
    """(digest of tree `kind`, CRC-32, length) of the `n` bytes of `fd` at `at`, read on a
    pool thread (pread, the hash and ISA-L release the GIL); shorter if the file ended early."""
    data = b""
    while len(data) < n:
        more = pread(fd, n - len(data), at + len(data))
        if not more:
            break
        data = more if not data else data + more
    return piece_digest((data,), kind), crc32(data), len(data)


def _settle(pending: Deque[Any]) -> None:
    """Cancel the tasks not started, wait for the others; their results are not wanted."""
    for task in pending:
        if hasattr(task, "cancel"):
            task.cancel()
    for task in pending:
        if not (hasattr(task, "cancelled") and task.cancelled()):
            try:
                task.result()
            except Exception:  # noqa: BLE001 (an error here is already superseded)
                pass
    pending.clear()
