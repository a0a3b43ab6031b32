"""The gzip member header (RFC 1952), written out once for the writer, the verifier and the
ownership stamp."""
from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

MAGIC = b"\x1f\x8b\x08"          # ID1 ID2 and CM = deflate
FIXED = struct.Struct("<3sBIBB")  # magic, FLG, MTIME, XFL, OS
TRAILER = struct.Struct("<II")    # CRC-32, ISIZE (length mod 2**32)
FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT = 1, 2, 4, 8, 16
FRESERVED = 0xE0
OS_UNKNOWN = 255
FIELD_MAX = 4096                  # longest FNAME/FCOMMENT we read


class GzipHeader(NamedTuple):
    flags: int
    extra: bytes
    name: bytes
    comment: bytes
    size: int                     # bytes the header takes


def fixed_header(flags: int) -> bytes:
    """The first 10 bytes with no time and OS "unknown": the same bytes on every machine."""
    return FIXED.pack(MAGIC, flags, 0, 0, OS_UNKNOWN)


class HeaderError(ValueError):
    """Not a gzip header, or one cut short (the message says which)."""


def _zstring(f: BinaryIO) -> bytes:
    out = bytearray()
    while len(out) <= FIELD_MAX:
        c = f.read(1)
        if not c:
            raise HeaderError("the gzip header is cut short")
        if c == b"\0":
            return bytes(out)
        out += c
    raise HeaderError(f"a gzip header field is longer than {FIELD_MAX} bytes")


def read_header(f: BinaryIO) -> GzipHeader:
    """Parse the header at `f`'s position, leaving `f` at the deflate data."""
    head = f.read(FIXED.size)
    if len(head) < FIXED.size or head[:3] != MAGIC:
        raise HeaderError("not a gzip file")
    flags = head[3]
    size, extra, name, comment = FIXED.size, b"", b"", b""
    if flags & FEXTRA:
        raw = f.read(2)
        if len(raw) < 2:
            raise HeaderError("the gzip header is cut short")
        extra = f.read(struct.unpack("<H", raw)[0])
        if len(extra) < struct.unpack("<H", raw)[0]:
            raise HeaderError("the gzip header is cut short")
        size += 2 + len(extra)
    if flags & FNAME:
        name = _zstring(f)
        size += len(name) + 1
    if flags & FCOMMENT:
        comment = _zstring(f)
        size += len(comment) + 1
    if flags & FHCRC:
        if len(f.read(2)) < 2:
            raise HeaderError("the gzip header is cut short")
        size += 2
    return GzipHeader(flags, extra, name, comment, size)
