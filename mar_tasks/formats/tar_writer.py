"""Where the ``.tar.gz`` is written.

The tar stream is produced by hand (headers from :class:`tarfile.TarInfo`) with fixed
times, modes and owners, then gzip-compressed by the parallel deflater. The gzip header has
no name and no time, and carries our ownership stamp in its comment field (patched in
place at the end, since it holds a digest of every byte after the header).
"""
from __future__ import annotations

import tarfile
from typing import BinaryIO, Callable, Iterable, Iterator, List, Optional

from mar_tasks.formats.deflate import CHUNK, ParallelDeflate, crc32
from mar_tasks.plan.selection import Entry
from mar_tasks.formats.input_files import read_chunks
from mar_tasks.formats import gzip_layout
from mar_tasks.formats.ownership_stamp import STAMP_LEN, TGZ_KIND, ContentDigest

BLOCK = 512
RECORD = 20 * BLOCK


def _info(name: str, size: int, mode: int, epoch: int, is_dir: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if is_dir else size
    info.mode = mode
    info.mtime = epoch
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _rechunk(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Cut a byte stream into CHUNK pieces: deflate output must not depend on read sizes."""
    buf = bytearray()
    for piece in pieces:
        buf += piece
        while len(buf) >= CHUNK:
            yield bytes(buf[:CHUNK])
            del buf[:CHUNK]
    if buf:
        yield bytes(buf)


def write_tgz(fp: BinaryIO, top: str, manifest: bytes, entries: List[Entry], epoch: int,
              deflater: ParallelDeflate, progress: Optional[Callable[[int], None]] = None) -> bytes:
    """Write ``<top>/MAR-INF/MANIFEST.json`` then every entry under ``<top>/``; return the stamp."""
    digest = ContentDigest(TGZ_KIND)   # the stamp: every byte after the gzip header

    def tar_stream() -> Iterator[bytes]:
        done_dirs = set()

        def dirs_for(arcname: str) -> Iterator[bytes]:
            parts = arcname.split("/")[:-1]
            for i in range(len(parts) + 1):
                d = "/".join([top] + parts[:i])
                if d not in done_dirs:
                    done_dirs.add(d)
                    yield _header(_info(d + "/", 0, 0o755, epoch, True))

        def member(arcname: str, size: int, executable: bool) -> bytes:
            return _header(_info(f"{top}/{arcname}", size, 0o755 if executable else 0o644, epoch, False))

        yield from dirs_for("MAR-INF/MANIFEST.json")
        yield member("MAR-INF/MANIFEST.json", len(manifest), False)
        yield manifest + b"\0" * (-len(manifest) % BLOCK)
        for e in entries:
            yield from dirs_for(e.arcname)
            yield member(e.arcname, e.size, e.executable)
            yield from read_chunks(e, progress)
            yield b"\0" * (-e.size % BLOCK)
        yield b"\0" * (2 * BLOCK)

    # gzip header: FLG=FCOMMENT, MTIME=0, XFL=0, OS=255 (unknown): same bytes on every OS.
    fp.write(gzip_layout.fixed_header(gzip_layout.FCOMMENT))
    stamp_at = fp.tell()
    fp.write(b"\0" * STAMP_LEN + b"\0")
    crc, total = 0, 0

    def counted(chunks: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal crc, total
        for c in chunks:
            crc = crc32(c, crc)
            total += len(c)
            yield c

    def padded(pieces: Iterable[bytes]) -> Iterator[bytes]:
        size = 0
        for p in pieces:
            size += len(p)
            yield p
        yield b"\0" * (-size % RECORD)  # like tarfile: whole 10 KiB records

    for piece in deflater.stream(counted(_rechunk(padded(tar_stream())))):
        fp.write(piece)
        digest.data.update(piece)
    trailer = gzip_layout.TRAILER.pack(crc, total & 0xFFFFFFFF)
    fp.write(trailer)
    digest.data.update(trailer)
    stamp = digest.stamp()
    end = fp.tell()
    fp.seek(stamp_at)
    fp.write(stamp)
    fp.seek(end)
    return stamp
