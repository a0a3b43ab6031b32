"""A structure-aware mutator of valid archives: it knows where a zip's and a tar's fields
are, so its mutations reach the checks behind the first ones (a random byte flip mostly
just breaks a CRC). Used by tests/test_fuzz_readers.py under the differential rule."""
from __future__ import annotations

import gzip
import random
import struct
import zlib
from typing import Callable, List, Tuple

from craft import pax_header, pax_record, raw_header, restamp
from mar_tasks.formats import zip_layout as zl
from mar_tasks.formats.ownership_stamp import STAMP_PREFIX

INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0x10000, 20, 45, 63]
NAME_BYTES = [b"/", b".", b"\\", b"A", b"\xc3", b"\0", b":", b" ", b"\x1b", b"a"]


def _records(data: bytes) -> List[Tuple[int, struct.Struct, int]]:
    """(offset, layout, name length) of every zip record found by its signature."""
    out = []
    for sig, layout in ((zl.LOCAL_SIG, zl.LOCAL), (zl.CENTRAL_SIG, zl.CENTRAL), (zl.EOCD_SIG, zl.EOCD),
                        (zl.Z64_EOCD_SIG, zl.Z64_EOCD), (zl.Z64_LOCATOR_SIG, zl.Z64_LOCATOR)):
        at = data.find(sig)
        while at >= 0:
            if at + layout.size <= len(data):
                nlen = 0
                if layout is zl.LOCAL:
                    nlen = struct.unpack_from("<H", data, at + 26)[0]
                elif layout is zl.CENTRAL:
                    nlen = struct.unpack_from("<H", data, at + 28)[0]
                out.append((at, layout, nlen))
            at = data.find(sig, at + 1)
    return out


LOCAL_FIELDS = ["needed", "flags", "method", "time", "date", "crc", "csize", "usize", "nlen", "elen"]
CENTRAL_FIELDS = ["made_by", "needed", "flags", "method", "time", "date", "crc", "csize", "usize",
                  "nlen", "elen", "clen", "disk", "internal", "external", "offset"]
SHARED = {"needed", "flags", "method", "crc", "csize", "usize"}
INTERESTING_FLAGS = [0x1, 0x2, 0x8, 0x20, 0x40, 0x800, 0x808, 0x2000, 0x4000]


def _field_offsets(layout: struct.Struct) -> List[Tuple[int, str]]:
    fmt, at, out = layout.format.lstrip("<"), 0, []
    for code in fmt[fmt.index("s") + 1:]:
        out.append((4 + at, code))
        at += struct.calcsize("<" + code)
    return out


def _field(layout: struct.Struct, field: str) -> Tuple[int, int]:
    names = LOCAL_FIELDS if layout is zl.LOCAL else CENTRAL_FIELDS
    off, code = _field_offsets(layout)[names.index(field)]
    return off, struct.calcsize("<" + code)


def mutate_entry_pair(data: bytes, rnd: random.Random) -> bytes:
    """Change one field the same way in an entry's local header and its central record, so
    the mutant gets past the check that they agree."""
    records = _records(data)
    locals_ = [r[0] for r in records if r[1] is zl.LOCAL]
    centrals = [r[0] for r in records if r[1] is zl.CENTRAL]
    if not locals_ or len(locals_) != len(centrals):
        return data
    n = rnd.randrange(len(locals_))
    field = rnd.choice(sorted(SHARED))
    off, size = _field(zl.CENTRAL, field)
    old = int.from_bytes(data[centrals[n] + off:centrals[n] + off + size], "little")
    value = rnd.choice(INTERESTING_FLAGS if field == "flags" else
                       [old + 1, old - 1, 0, 1, zl.MAX32, 45, 46, 63, 12, old ^ 0x80])
    if field == "flags" and rnd.random() < 0.5:
        value |= old
    out = bytearray(data)
    for at, layout in ((locals_[n], zl.LOCAL), (centrals[n], zl.CENTRAL)):
        off, size = _field(layout, field)
        out[at + off:at + off + size] = (value % (1 << 8 * size)).to_bytes(size, "little")
    return bytes(out)


def mutate_zip(data: bytes, rnd: random.Random) -> bytes:
    if rnd.random() < 0.3:
        return mutate_entry_pair(data, rnd)
    out = bytearray(data)
    records = _records(data)
    if not records:
        return bytes(out)
    for _ in range(rnd.choice([1, 1, 2, 3])):
        at, layout, nlen = rnd.choice(records)
        what = rnd.random()
        if what < 0.6:
            off, code = rnd.choice(_field_offsets(layout))
            size = struct.calcsize("<" + code)
            old = int.from_bytes(out[at + off:at + off + size], "little")
            value = rnd.choice(INTERESTING + [old + 1, old - 1, old ^ (1 << rnd.randrange(8 * size)),
                                              rnd.getrandbits(8 * size)]) % (1 << 8 * size)
            out[at + off:at + off + size] = value.to_bytes(size, "little")
        elif what < 0.85 and nlen:
            start = at + layout.size + rnd.randrange(nlen)
            new = rnd.choice(NAME_BYTES)
            out[start:start + 1] = new
            # the same change in the other header of this entry keeps them agreeing
            name = bytes(data[at + layout.size:at + layout.size + nlen])
            twin = data.find(name, at + 1) if layout is zl.LOCAL else data.find(name)
            if twin >= 0 and twin != at + layout.size:
                out[twin + start - at - layout.size:twin + start - at - layout.size + 1] = new
        else:
            out[at:at] = rnd.choice([b"PK\x05\x06" + bytes(18), b"PK\x06\x07" + bytes(16), bytes(4)])
    return bytes(out)


def _checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def mutate_tar(raw: bytes, rnd: random.Random) -> bytes:
    """Mutate an uncompressed tar stream header by header (checksums kept valid)."""
    out = bytearray(raw)
    heads = [i for i in range(0, len(raw) - 511, 512)
             if raw[i + 257:i + 262] == b"ustar" and raw[i:i + 512].strip(b"\0")]
    for _ in range(rnd.choice([1, 1, 2])):
        what = rnd.random()
        if heads and what < 0.07:  # two extension headers before one entry
            at = rnd.choice(heads)
            out[at:at] = pax_header(pax_record(rnd.choice(["path", "mtime"]), "x/evil.py" if rnd.random() < 0.5
                                               else "1")) + pax_header(pax_record("mtime", "2"))
            heads = []
            continue
        if not heads or what < 0.2:
            at = rnd.choice(heads) if heads else 0
            records = rnd.choice([pax_record("path", rnd.choice(["x/MAR-INF/MANIFEST.json", "x/./service.py",
                                                                 "x/evil.py", "x//a", "y/a", "x/Service.py"])),
                                  pax_record("size", rnd.choice(["0", "1_0", "+5", "10", "999"])),
                                  pax_record(rnd.choice(["hdrcharset", "linkpath", "GNU.sparse.size", "mtime"]), "1"),
                                  pax_record(rnd.choice(["mtime", "atime", "ctime", "uid", "gid"]),
                                             rnd.choice(["9" * 40, "1." + "9" * 30, "-5", "4294967296", "2147483648",
                                                         "1e5", "0x10", " 5", "1.5", "-0.000000001", "99999999999"])),
                                  pax_record(rnd.choice(["uname", "gname"]), rnd.choice(["", "é", "a" * 300, "\x1b"])),
                                  b"9 path=x/q\n", b"011 path=x\n"])
            kind = rnd.choice([b"x", b"x", b"g", b"L", b"K"])
            out[at:at] = pax_header(records, kind=kind) if kind in (b"x", b"g") else \
                raw_header(b"././@LongLink", len(records), kind) + records + b"\0" * (-len(records) % 512)
            heads = []
            continue
        at = rnd.choice(heads)
        block = bytearray(out[at:at + 512])
        field = rnd.choice(["type", "name", "size", "magic", "mode", "prefix", "pad", "linkname", "uname"])
        if field == "type":
            block[156] = rnd.choice(b"0125467xgLKS\0")
        elif field == "name":
            i = rnd.randrange(max(1, block[:100].find(b"\0") if b"\0" in block[:100] else 100))
            block[i] = rnd.choice(b"/.\\A\0 :")
        elif field == "size":
            block[124:136] = rnd.choice([b"00000000000\0", b"0000000_012\0", b"\x80" + bytes(10) + b"\x10",
                                         b" 0000000012\0", b"00000001000\0", b"77777777777\0"])
        elif field == "magic":
            block[257:265] = rnd.choice([b"ustar  \0", b"ustar\0\0\0", b"ustar\x0001"])
        elif field == "mode":
            block[100:108] = rnd.choice([b"0000644 ", b"00006_4\0", b"\x80" + bytes(7)])
        elif field == "pad":
            block[500:512] = rnd.choice([b"\0" * 8 + b"tar\0", b"\1" + bytes(11)])
        elif field == "linkname":
            block[157:165] = rnd.choice([b"x/a\0\0\0\0\0", b"/etc\0\0\0\0"])
        elif field == "uname":
            block[265:270] = rnd.choice([b"root\0", b"\xff\xfe\0\0\0"])
        else:
            block[345:350] = rnd.choice([b"x\0\0\0\0", b"y\0\0\0\0", b"x/./\0"])
        _checksum(block)
        out[at:at + 512] = block
    if rnd.random() < 0.15:
        out += rnd.choice([bytes(20480), b"\1", bytes(512) + out[:512]])
    return bytes(out)


def mutate_gzip(data: bytes, rnd: random.Random) -> bytes:
    """Mutate the tar inside, sometimes the gzip header's flags, and re-compress."""
    raw = gzip.decompress(data)
    if rnd.random() < 0.8:
        raw = mutate_tar(raw, rnd)
    head = bytearray(data[:10])
    rest_at = 10
    # keep our comment (the stamp) when there is one
    if head[3] & 16 and not head[3] & 12:
        rest_at = data.index(b"\0", 10) + 1
    fields = bytes(data[10:rest_at])
    if rnd.random() < 0.2:
        flag = rnd.choice([0x20, 0x40, 0x80, 0x02, 0x04, 0x08])
        head[3] |= flag
        if flag == 0x04:
            fields = b"\x04\x00AB\x00\x00" + fields
        elif flag == 0x08:
            fields = b"n\0" + fields
        elif flag == 0x02:
            fields = fields + b"\0\0"
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = bytes(head) + fields + c.compress(raw) + c.flush() + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)
    if rnd.random() < 0.05:
        out += gzip.compress(b"\0" * 512)
    return out


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """One mutant of `data`; ours are re-stamped half the time, so that the stamp (which any
    change breaks) does not hide the checks behind it."""
    ours = STAMP_PREFIX in data[:200] or STAMP_PREFIX in data[-200:]
    fn: Callable[[bytes, random.Random], bytes] = mutate_zip if data[:2] == b"PK" else mutate_gzip
    out = fn(data, rnd)
    if ours and rnd.random() < 0.5:
        try:
            out = restamp(out)
        except Exception:  # a mutant too broken to re-stamp stays as it is
            pass
    return out
