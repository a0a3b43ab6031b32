"""Where a zip (``.mar``) is read back and checked, without :mod:`zipfile` and without
extracting anything.

TorchServe's frontend unzips with Java's ``ZipInputStream``, which walks the *local*
headers from offset 0; Python's zipfile and ``unzip`` read the *central directory*. A zip
on which the two disagree shows each reader other files, so the check is strict: the
local headers, read one after another from offset 0, must be exactly the central
directory's entries, in order, with the same name, method, flags, CRC and sizes, and the
central directory must follow the last one. Every entry is inflated in 1 MiB steps
(constant memory, nothing written) and stops at its declared size, so a zip bomb costs
CPU time bounded by what deflate can produce (~1032x the stored bytes), never memory.
"""
from __future__ import annotations

import hashlib
import struct
import zlib

from isal import isal_zlib  # ISA-L's inflate: the same streams, about twice zlib's speed
from dataclasses import dataclass
from typing import BinaryIO, Dict, List, Optional, Tuple

from mar_tasks.display import shown
from mar_tasks.errors import ArchiveError

_EOCD = struct.Struct("<4sHHHHIIH")
_Z64_LOCATOR = struct.Struct("<4sIQI")
_Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
STEP = 1 << 20
MAX_DEFLATE_RATIO = 1032   # deflate cannot expand more than this (258 bytes per 2 bits)
ENCRYPTED, DESCRIPTOR, UTF8 = 0x1, 0x8, 0x800


@dataclass
class ZipEntry:
    raw_name: bytes
    name: str              # decoded (surrogateescape for bytes that are not UTF-8)
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    external_attr: int


@dataclass
class ZipLayout:
    entries: List[ZipEntry]
    cd_offset: int
    cd_size: int
    cd_end: int            # where the zip64 end record or the end record starts
    size: int              # file size
    end_of_zip: int        # just after the end record and its comment
    comment: bytes


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> Tuple[int, int, int]:
    """Replace 0xFFFFFFFF fields by the values of a zip64 extra field (0x0001)."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4:at + 4 + size]
        if tag == 1:
            vals = [v for v in struct.unpack_from(f"<{len(body) // 8}Q", body)] if len(body) >= 8 else []
            if usize == 0xFFFFFFFF and vals:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            if offset == 0xFFFFFFFF and vals:
                offset = vals.pop(0)
        at += 4 + size
    return usize, csize, offset


def read_layout(f: BinaryIO, label: str) -> ZipLayout:
    """Parse the end record(s) and the central directory; ArchiveError if it is no zip."""
    size = f.seek(0, 2)
    tail_len = min(size, _Z64_LOCATOR.size + _EOCD.size + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0 and at + _EOCD.size > len(tail):
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        raise ArchiveError(f"{label} is not a zip (no end-of-central-directory record)")
    fields = _EOCD.unpack_from(tail, at)
    eocd_pos = size - tail_len + at
    comment = tail[at + _EOCD.size:at + _EOCD.size + fields[7]]
    count, cd_size, cd_offset = fields[4], fields[5], fields[6]
    cd_end = eocd_pos
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        loc_at = at - _Z64_LOCATOR.size
        if loc_at < 0 or tail[loc_at:loc_at + 4] != b"PK\x06\x07":
            raise ArchiveError(f"{label}: zip64 end record locator is missing")
        _, _, z64_pos, _ = _Z64_LOCATOR.unpack_from(tail, loc_at)
        if z64_pos + _Z64_EOCD.size > eocd_pos:
            raise ArchiveError(f"{label}: zip64 end record points outside the file")
        f.seek(z64_pos)
        rec = f.read(_Z64_EOCD.size)
        if rec[:4] != b"PK\x06\x06":
            raise ArchiveError(f"{label}: zip64 end record is missing")
        z = _Z64_EOCD.unpack(rec)
        count, cd_size, cd_offset = z[7], z[8], z[9]
        cd_end = z64_pos
    if cd_offset + cd_size > cd_end or count > cd_size // _CENTRAL.size:
        raise ArchiveError(f"{label}: central directory does not fit in the file")
    f.seek(cd_offset)
    cd = f.read(cd_size)
    entries: List[ZipEntry] = []
    pos = 0
    for _ in range(count):
        if pos + _CENTRAL.size > len(cd) or cd[pos:pos + 4] != b"PK\x01\x02":
            raise ArchiveError(f"{label}: central directory entry {len(entries) + 1} is damaged")
        c = _CENTRAL.unpack_from(cd, pos)
        nlen, elen, clen = c[10], c[11], c[12]
        start = pos + _CENTRAL.size
        raw = cd[start:start + nlen]
        extra = cd[start + nlen:start + nlen + elen]
        usize, csize, offset = _zip64_extra(extra, c[9], c[8], c[16])
        entries.append(ZipEntry(raw, raw.decode("utf-8", "surrogateescape"), c[3], c[4], c[7],
                                csize, usize, offset, c[15]))
        pos = start + nlen + elen + clen
    if pos != len(cd):
        raise ArchiveError(f"{label}: central directory size does not match its entries")
    return ZipLayout(entries, cd_offset, cd_size, cd_end, size,
                     eocd_pos + _EOCD.size + len(comment), comment)


def _local(f: BinaryIO, pos: int) -> Optional[Tuple[tuple, bytes, bytes, int]]:
    f.seek(pos)
    head = f.read(_LOCAL.size)
    if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
        return None
    h = _LOCAL.unpack(head)
    rest = f.read(h[9] + h[10])
    return h, rest[:h[9]], rest[h[9]:], pos + _LOCAL.size + h[9] + h[10]


def inflate(f: BinaryIO, e: ZipEntry, data_at: int, sink=None) -> Optional[str]:
    """Read entry `e`'s data, check size and CRC; feed the bytes to `sink`. A problem or None."""
    f.seek(data_at)
    left, out, crc = e.csize, 0, 0
    d = isal_zlib.decompressobj(-15) if e.method == 8 else None
    while left:
        block = f.read(min(STEP, left))
        if not block:
            return "data is cut short"
        left -= len(block)
        while block:
            if d is None:
                piece, block = block, b""
            else:
                try:
                    piece = d.decompress(block, STEP)
                except (zlib.error, isal_zlib.error) as exc:
                    return f"broken deflate stream ({exc})"
                block = d.unconsumed_tail
            out += len(piece)
            if out > e.usize:
                return f"inflates to more than its declared {e.usize:,} bytes"
            crc = isal_zlib.crc32(piece, crc)
            if sink is not None:
                sink(piece)
            if d is not None and d.eof:
                break
    if d is not None and (not d.eof or d.unused_data or d.unconsumed_tail):
        return "deflate stream does not end where its stored size says"
    if out != e.usize:
        return f"holds {out:,} bytes, not the declared {e.usize:,}"
    if crc != e.crc:
        return f"bad CRC-32 ({crc:08x}, the header says {e.crc:08x})"
    return None


def check(f: BinaryIO, layout: ZipLayout, digests: Optional[Dict[str, str]] = None) -> List[str]:
    """Every way the local headers and data disagree with the central directory. With
    `digests`, also fill it with each entry's SHA-256 (same single pass over the data)."""
    problems: List[str] = []
    pos = 0
    for e in layout.entries:
        name = shown(e.name)
        if e.offset != pos:
            problems.append(f"entry {name}: local header at offset {e.offset}, expected {pos} "
                            "(a stream reader such as TorchServe's would see other entries)")
            return problems
        local = _local(f, pos)
        if local is None:
            problems.append(f"entry {name}: no local header at offset {pos}")
            return problems
        h, raw, extra, data_at = local
        if e.flags & ENCRYPTED:
            problems.append(f"entry {name} is encrypted: TorchServe cannot read it")
            return problems
        if e.method not in (0, 8):
            problems.append(f"entry {name} uses compression method {e.method}: only store (0) "
                            "and deflate (8) are readable everywhere")
            return problems
        if raw != e.raw_name or h[2] != e.flags or h[3] != e.method:
            problems.append(f"entry {name}: local header disagrees with the central directory "
                            "(name, flags or method)")
            return problems
        lusize, lcsize, _ = _zip64_extra(extra, h[8], h[7], 0)
        if not e.flags & DESCRIPTOR and (h[6], lcsize, lusize) != (e.crc, e.csize, e.usize):
            problems.append(f"entry {name}: local header's CRC or sizes disagree with the "
                            "central directory")
            return problems
        if e.method == 8 and e.usize > e.csize * MAX_DEFLATE_RATIO + 1024:
            problems.append(f"entry {name} claims {e.usize:,} bytes from {e.csize:,}: more than "
                            "deflate can produce")
            return problems
        if data_at + e.csize > layout.cd_offset:
            problems.append(f"entry {name}: data runs into the central directory")
            return problems
        h = hashlib.sha256() if digests is not None and not e.name.endswith("/") else None
        why = inflate(f, e, data_at, h.update if h else None)
        if h is not None:
            digests[e.name] = h.hexdigest()
        if why:
            problems.append(f"corrupt data in {name}: {why}")
        pos = data_at + e.csize
        if e.flags & DESCRIPTOR:
            f.seek(pos)
            desc = f.read(24)
            if desc[:4] == b"PK\x07\x08":
                desc = desc[4:]
                pos += 4
            big = e.csize >= 0xFFFFFFFF or e.usize >= 0xFFFFFFFF
            fmt = "<IQQ" if big else "<III"
            if len(desc) < struct.calcsize(fmt) or struct.unpack_from(fmt, desc) != (e.crc, e.csize, e.usize):
                problems.append(f"entry {name}: data descriptor disagrees with the central directory")
                return problems
            pos += struct.calcsize(fmt)
    if pos != layout.cd_offset:
        problems.append(f"{layout.cd_offset - pos} bytes lie between the last entry and the "
                        "central directory (hidden from one kind of reader)")
    if layout.cd_offset + layout.cd_size != layout.cd_end:
        problems.append("bytes lie between the central directory and the end record")
    if layout.end_of_zip != layout.size:
        problems.append(f"{layout.size - layout.end_of_zip} bytes were appended after the zip's "
                        "end record")
    return problems


def central_digest(f: BinaryIO, layout: ZipLayout) -> str:
    """sha256 of the central directory's bytes: what our zip stamp records."""
    h = hashlib.sha256()
    f.seek(layout.cd_offset)
    left = layout.cd_size
    while left:
        block = f.read(min(STEP, left))
        if not block:
            break
        h.update(block)
        left -= len(block)
    return h.hexdigest()


def read_member(f: BinaryIO, e: ZipEntry, limit: int) -> bytes:
    """The bytes of one (checked) entry of at most `limit` bytes."""
    if e.usize > limit:
        raise ArchiveError(f"{shown(e.name)} is larger than {limit:,} bytes")
    local = _local(f, e.offset)
    if local is None:
        raise ArchiveError(f"{shown(e.name)}: no local header")
    out = bytearray()
    why = inflate(f, e, local[3], out.extend)
    if why:
        raise ArchiveError(f"corrupt data in {shown(e.name)}: {why}")
    return bytes(out)
