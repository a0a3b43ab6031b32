"""Where a ``.tar.gz`` is read back and checked: one streaming pass, nothing extracted.

The gzip layer is inflated in 1 MiB steps (constant memory) and its CRC-32 and length
trailer are checked; a stream cut short, a second gzip member or bytes after it are
problems. The tar layer is parsed by hand, header by header, so that every entry type is
seen: only regular files and folders belong in a model archive (no links, devices or
FIFOs). The hash of the raw headers gives back our stamp (see :mod:`mar_tasks.formats.tar_writer`).
"""
from __future__ import annotations

import hashlib
import struct
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional

from mar_tasks.errors import ArchiveError

STEP = 1 << 20
BLOCK = 512
KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"5": "folder", b"1": "hard link",
         b"2": "symbolic link", b"3": "character device", b"4": "block device", b"6": "FIFO"}
META = {b"x", b"g", b"L", b"K"}


class CorruptStream(Exception):
    """The gzip layer is broken (message says how)."""


class GzipStream:
    """The decompressed bytes of a single-member gzip file, read strictly."""

    def __init__(self, f: BinaryIO, label: str) -> None:
        self.f = f
        head = f.read(10)
        if len(head) < 10 or head[:3] != b"\x1f\x8b\x08":
            raise ArchiveError(f"{label} is not a gzip file")
        flags = head[3]
        self.comment = b""
        if flags & 4:
            raw = f.read(2)
            if len(raw) < 2 or len(f.read(struct.unpack("<H", raw)[0])) < struct.unpack("<H", raw)[0]:
                raise ArchiveError(f"{label}: the gzip header is cut short")
        if flags & 8:
            self._zstring(4096)
        if flags & 16:
            self.comment = self._zstring(4096)
        if flags & 2:
            f.read(2)
        self.d = zlib.decompressobj(-15)
        self.buf = b""
        self.crc = 0
        self.total = 0
        self.done = False

    def _zstring(self, limit: int) -> bytes:
        out = bytearray()
        while len(out) <= limit:
            c = self.f.read(1)
            if c in (b"\0", b""):
                return bytes(out)
            out += c
        raise ArchiveError("gzip header field is too long")

    def _more(self) -> bool:
        if self.done:
            return False
        block = self.d.unconsumed_tail or self.f.read(STEP)
        if not block and not self.d.eof:
            raise CorruptStream("the gzip stream is cut short (truncated file)")
        try:
            piece = self.d.decompress(block, STEP)
        except zlib.error as exc:
            raise CorruptStream(f"broken deflate stream ({exc})") from None
        self.crc = zlib.crc32(piece, self.crc)
        self.total += len(piece)
        self.buf += piece
        if self.d.eof:
            self.done = True
            self._trailer()
        return True

    def _trailer(self) -> None:
        rest = self.d.unused_data + self.f.read(9 - len(self.d.unused_data)) \
            if len(self.d.unused_data) < 9 else self.d.unused_data
        if len(rest) < 8:
            raise CorruptStream("the gzip trailer is cut short (truncated file)")
        crc, size = struct.unpack_from("<II", rest)
        if crc != self.crc:
            raise CorruptStream(f"gzip CRC-32 mismatch ({self.crc:08x}, the trailer says {crc:08x})")
        if size != self.total & 0xFFFFFFFF:
            raise CorruptStream("gzip length in the trailer does not match the data")
        if len(rest) > 8:
            raise CorruptStream("bytes follow the gzip stream (a second member or appended data)")

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and self._more():
            pass
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def drain(self) -> bool:
        """Read to the end; True if everything left was zero bytes."""
        zeros = not self.buf.strip(b"\0")
        self.buf = b""
        while self._more():
            zeros = zeros and not self.buf.strip(b"\0")
            self.buf = b""
        return zeros


@dataclass
class TarEntry:
    name: str
    size: int
    kind: str


def _pax(data: bytes) -> Dict[str, str]:
    out: Dict[str, str] = {}
    at = 0
    while at < len(data):
        sp = data.find(b" ", at)
        if sp < 0:
            break
        try:
            length = int(data[at:sp])
        except ValueError:
            raise ArchiveError("malformed pax header") from None
        if length <= 0:
            break
        key, _, value = data[sp + 1:at + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at += length
    return out


def _size(value: "str | int") -> int:
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < 0:
        raise ArchiveError(f"bad tar header (size {str(value)[:20]!r})")
    return size


def entries(stream: GzipStream, headers: "hashlib._Hash",
            on_data: Optional[Callable[[TarEntry], Optional[Callable[[bytes], None]]]] = None
            ) -> Iterator[TarEntry]:
    """Yield every tar entry; `headers` gets the raw header bytes (pax data included);
    `on_data(entry)` may return a sink for that entry's bytes."""
    pending: Dict[str, str] = {}
    raw = bytearray()
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            raise ArchiveError("the tar stream ends without its end-of-archive blocks")
        if block == bytes(BLOCK):
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ArchiveError(f"bad tar header ({exc})") from None
        raw += block
        kind = block[156:157]
        if kind in META:
            data = stream.read(info.size + (-info.size % BLOCK))
            raw += data
            if kind == b"x":
                pending.update(_pax(data[:info.size]))
            elif kind == b"L":
                pending["path"] = data[:info.size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        headers.update(bytes(raw))
        raw.clear()
        name = pending.get("path", info.name)
        size = _size(pending.get("size", info.size)) if kind in (b"0", b"\0", b"7") else 0
        pending.clear()
        entry = TarEntry(name, size, KINDS.get(kind, f"type {kind!r}"))
        sink = on_data(entry) if on_data else None
        left = size + (-size % BLOCK)
        kept = size
        while left:
            piece = stream.read(min(STEP, left))
            if not piece:
                raise ArchiveError(f"the tar stream ends inside {entry.name!r}")
            left -= len(piece)
            if sink is not None and kept:
                sink(piece[:kept])
            kept = max(0, kept - len(piece))
        yield entry


def scan(f: BinaryIO, label: str,
         on_data: Optional[Callable[[TarEntry], Optional[Callable[[bytes], None]]]] = None
         ) -> "tuple[List[TarEntry], List[str], Optional[str], bytes]":
    """(entries, problems, digest for the stamp, gzip comment) of one pass over the file."""
    stream = GzipStream(f, label)
    headers = hashlib.sha256()
    found: List[TarEntry] = []
    problems: List[str] = []
    try:
        found.extend(entries(stream, headers, on_data))
        if not stream.drain():
            problems.append("data follows the tar end-of-archive blocks")
    except CorruptStream as exc:
        problems.append(str(exc))
        return found, problems, None, stream.comment
    except ArchiveError as exc:
        problems.append(str(exc))
        try:
            stream.drain()
        except CorruptStream as exc2:
            problems.append(str(exc2))
        return found, problems, None, stream.comment
    headers.update(struct.pack("<IQ", stream.crc, stream.total))
    return found, problems, headers.hexdigest(), stream.comment
