"""The zip record layouts (APPNOTE 6.3), written out once for the writer, the verifier and
the ownership stamp. Only layout lives here; what the verifier accepts is its own rule.
"""
from __future__ import annotations

import struct
from typing import Iterator, Optional, Tuple

LOCAL_SIG, CENTRAL_SIG = b"PK\x03\x04", b"PK\x01\x02"
EOCD_SIG, Z64_EOCD_SIG, Z64_LOCATOR_SIG = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
DESCRIPTOR_SIG = b"PK\x07\x08"
SIGNATURES = (LOCAL_SIG, CENTRAL_SIG, EOCD_SIG, Z64_EOCD_SIG, Z64_LOCATOR_SIG, DESCRIPTOR_SIG)

# signature, version needed, flags, method, time, date, crc, csize, usize, name len, extra len
LOCAL = struct.Struct("<4sHHHHHIIIHH")
# signature, made by, needed, flags, method, time, date, crc, csize, usize, name len, extra len,
# comment len, disk start, internal attr, external attr, local header offset
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
# signature, this disk, CD disk, entries here, entries, CD size, CD offset, comment len
EOCD = struct.Struct("<4sHHHHIIH")
# signature, record size (after this field), made by, needed, this disk, CD disk,
# entries here, entries, CD size, CD offset
Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")
Z64_EOCD_BODY = Z64_EOCD.size - 12       # 44: the record size of one without extensible data
# signature, disk of the zip64 end record, its offset, number of disks
Z64_LOCATOR = struct.Struct("<4sIQI")
EXTRA_HEADER = struct.Struct("<HH")
ZIP64_EXTRA = 0x0001
# zipalign's record, which our writer puts last in a large entry's *local* header so its data
# start on an ALIGN boundary (block sharing): the alignment (2 bytes), then zero padding.
ALIGN_EXTRA = 0xD935
ALIGN = 4096

MAX16, MAX32 = 0xFFFF, 0xFFFFFFFF
ZIPFILE_ZIP64_LIMIT = (1 << 31) - 1   # Python's zipfile writes zip64 end records past this
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800
STORED, DEFLATED = 0, 8
VERSION_DEFAULT, VERSION_ZIP64 = 20, 45
TAIL_MAX = Z64_LOCATOR.size + EOCD.size + MAX16   # the most an end record search reads


def find_end_record(tail: bytes) -> Optional[int]:
    """Where the end record sits in a file's last bytes, searching backwards as zipfile and
    unzip do: the last signature whose record and comment fit in `tail`; None if none."""
    at = tail.rfind(EOCD_SIG)
    while at >= 0:
        if at + EOCD.size <= len(tail):
            if at + EOCD.size + EOCD.unpack_from(tail, at)[7] <= len(tail):
                return at
        at = tail.rfind(EOCD_SIG, 0, at)
    return None


def spells_signature(end: bytes) -> bool:
    """True if a zip signature starts anywhere in `end` (an end record and its comment) but
    at its first byte: zipfile and unzip take the *last* end-record signature they find, so
    one spelled by the record's own fields or its comment makes them read another record."""
    return any(end.find(sig, 1) >= 0 for sig in SIGNATURES)


def extra_records(extra: bytes) -> Iterator[Tuple[int, bytes]]:
    """(tag, body) of every extra field record; a record cut short ends with tag -1."""
    at = 0
    while at < len(extra):
        if at + EXTRA_HEADER.size > len(extra):
            yield -1, extra[at:]
            return
        tag, size = EXTRA_HEADER.unpack_from(extra, at)
        body = extra[at + EXTRA_HEADER.size:at + EXTRA_HEADER.size + size]
        if len(body) < size:
            yield -1, body
            return
        yield tag, body
        at += EXTRA_HEADER.size + size


def zip64_extra(values: "list[int]") -> bytes:
    """The zip64 extra field record holding `values` (usize, csize, offset: those saturated)."""
    if not values:
        return b""
    return EXTRA_HEADER.pack(ZIP64_EXTRA, 8 * len(values)) + struct.pack(f"<{len(values)}Q", *values)


def align_extra(header_end: int) -> bytes:
    """The alignment record that makes data starting after it (a local header whose other
    fields end at file offset `header_end`) start on an :data:`ALIGN` boundary."""
    pad = -(header_end + EXTRA_HEADER.size + 2) % ALIGN
    return EXTRA_HEADER.pack(ALIGN_EXTRA, 2 + pad) + struct.pack("<H", ALIGN) + bytes(pad)


def is_align_record(body: bytes) -> bool:
    """A body of :data:`ALIGN_EXTRA` exactly as :func:`align_extra` writes it."""
    return len(body) >= 2 and len(body) - 2 < ALIGN and body[:2] == struct.pack("<H", ALIGN) \
        and not any(body[2:])
