"""Byte-level builders for hostile archives: every field of a zip's records and of a tar's
headers can be set, so a case says exactly which construct it is about."""
from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from mar_tasks.formats import zip_layout as zl

HANDLER = b"def handle(data, context):\n    return data\n"
MANIFEST = json.dumps({"runtime": "python", "model": {
    "modelName": "x", "handler": "service", "modelVersion": "1.0"}}).encode()
EVIL_MANIFEST = json.dumps({"runtime": "python", "model": {
    "modelName": "x", "handler": "evil", "modelVersion": "1.0"}}).encode()
EVIL = b"import os\ndef handle(data, context):\n    os.system('id')\n"


@dataclass
class ZEntry:
    name: bytes
    data: bytes = b""
    method: int = zl.STORED
    flags: int = 0
    needed: int = 20
    local_extra: bytes = b""
    central_extra: bytes = b""
    comment: bytes = b""
    disk: int = 0
    external: int = 0o100644 << 16
    made_by: int = 0x31E               # Unix, 3.0
    usize: Optional[int] = None      # override what the headers claim
    csize: Optional[int] = None
    crc: Optional[int] = None
    local: Dict[str, int] = field(default_factory=dict)   # override local fields by name
    stored: Optional[bytes] = None   # the stored bytes as given (else data, deflated if method 8)


def build_zip(entries: List[ZEntry], comment: bytes = b"", prefix: bytes = b"", between: bytes = b"",
              eocd: Optional[Dict[str, int]] = None, zip64: Optional[Dict[str, int]] = None) -> bytes:
    """A zip with full control of every field. `zip64` (a dict, possibly empty) adds a
    zip64 end record and locator; its keys override fields."""
    out = bytearray(prefix)
    central = bytearray()
    for e in entries:
        stored = e.stored if e.stored is not None else e.data if e.method == zl.STORED else _deflate(e.data)
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        usize = len(e.data) if e.usize is None else e.usize
        csize = len(stored) if e.csize is None else e.csize
        offset = len(out)
        lf = dict(needed=e.needed, flags=e.flags, method=e.method, crc=crc, csize=csize, usize=usize)
        lf.update(e.local)
        out += zl.LOCAL.pack(zl.LOCAL_SIG, lf["needed"], lf["flags"], lf["method"], 0, 0x21,
                             lf["crc"], lf["csize"], lf["usize"], len(e.name), len(e.local_extra))
        out += e.name + e.local_extra + stored
        central += zl.CENTRAL.pack(zl.CENTRAL_SIG, e.made_by, e.needed, e.flags, e.method, 0, 0x21, crc,
                                   csize, usize, len(e.name), len(e.central_extra), len(e.comment),
                                   e.disk, 0, e.external, offset)
        central += e.name + e.central_extra + e.comment
    out += between
    cd_offset = len(out)
    out += central
    f = dict(disk=0, cd_disk=0, here=len(entries), count=len(entries), size=len(central),
             offset=cd_offset)
    if zip64 is not None:
        z = dict(body=zl.Z64_EOCD_BODY, needed=45, disk=0, cd_disk=0, here=len(entries),
                 count=len(entries), size=len(central), offset=cd_offset, extensible=b"",
                 loc_offset=None, disks=1)
        z.update(zip64)
        at = len(out)
        out += zl.Z64_EOCD.pack(zl.Z64_EOCD_SIG, z["body"], 0x31E, z["needed"], z["disk"], z["cd_disk"],
                                z["here"], z["count"], z["size"], z["offset"]) + z["extensible"]
        out += zl.Z64_LOCATOR.pack(zl.Z64_LOCATOR_SIG, 0, at if z["loc_offset"] is None else z["loc_offset"],
                                   z["disks"])
    f.update(eocd or {})
    out += zl.EOCD.pack(zl.EOCD_SIG, f["disk"], f["cd_disk"], f["here"], f["count"], f["size"],
                        f["offset"], len(comment)) + comment
    return bytes(out)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def good_entries(*more: ZEntry) -> List[ZEntry]:
    return [ZEntry(b"MAR-INF/MANIFEST.json", MANIFEST), ZEntry(b"service.py", HANDLER), *more]


# --- tar -------------------------------------------------------------------------------------

def ustar(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, pax: Optional[dict] = None,
          fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """One member's header(s) and data as tarfile writes it (`pax` adds an 'x' header)."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if pax is not None:
        info.pax_headers = pax
        fmt = tarfile.PAX_FORMAT
    head = info.tobuf(fmt, "utf-8", "surrogateescape")
    return head + data + b"\0" * (-len(data) % 512 if kind == tarfile.REGTYPE else 0)


def raw_header(name: bytes, size: int, kind: bytes, magic: bytes = b"ustar\x0000",
               size_field: Optional[bytes] = None) -> bytes:
    """A tar header built field by field (checksum computed), for forms tarfile never writes."""
    h = bytearray(512)
    h[0:len(name[:100])] = name[:100]
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[156:157] = kind
    h[257:265] = magic
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def pax_header(records: bytes, name: bytes = b"PaxHeaders/x", kind: bytes = b"x") -> bytes:
    return raw_header(name, len(records), kind) + records + b"\0" * (-len(records) % 512)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def file_block(name: str, data: bytes) -> bytes:
    return raw_header(name.encode(), len(data), b"0") + data + b"\0" * (-len(data) % 512)


def tgz(*members: bytes, top: str = "x", tail: bytes = b"\0" * 1024, pad_to_record: bool = True,
        gzip_flags: Optional[int] = None, gzip_extra: bytes = b"") -> bytes:
    """A .tar.gz of `members` (after the top folder, the manifest and the handler)."""
    body = ustar(top + "/", kind=tarfile.DIRTYPE) + ustar(f"{top}/MAR-INF/MANIFEST.json", MANIFEST) \
        + ustar(f"{top}/service.py", HANDLER) + b"".join(members) + tail
    if pad_to_record:
        body += b"\0" * (-len(body) % 10240)
    return gzip_bytes(body, gzip_flags, gzip_extra)


def gzip_bytes(body: bytes, flags: Optional[int] = None, extra: bytes = b"") -> bytes:
    if flags is None:
        return gzip.compress(body, mtime=0)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = struct.pack("<3sBIBB", b"\x1f\x8b\x08", flags, 0, 0, 255)
    if flags & 4:
        head += struct.pack("<H", len(extra)) + extra
    if flags & 8:
        head += b"name\0"
    if flags & 16:
        head += b"comment\0"
    if flags & 2:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    return head + c.compress(body) + c.flush() + struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF)


def python_zip(files: Dict[str, bytes], **kw) -> bytes:
    """A zip as Python's zipfile (torch-model-archiver) writes it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", kw.get("compression", zipfile.ZIP_DEFLATED)) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def python_tgz(files: Dict[str, bytes], top: str = "x", fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A .tar.gz as Python's tarfile (torch-model-archiver) writes it, folders included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as t:
        done = set()
        for name, data in files.items():
            parts = name.split("/")
            for i in range(len(parts)):
                d = "/".join([top] + parts[:i])
                if d not in done:
                    done.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mtime = 1700000000.5
                    t.addfile(info)
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mtime = 1700000000.25   # a float: tarfile adds a pax mtime, as for real files
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- re-stamping and CRC forging: what a careless or hostile editor can do -------------------

def restamp(data: bytes, kind: Optional[bytes] = None) -> bytes:
    """`data` (one of our archives, edited) with a fresh, matching mar_tasks stamp. The stamp
    is unkeyed, so this is always possible: it shows the verifier's other checks still hold.

    A zip keeps its stamp's kind unless `kind` names another (`PLAIN_KIND`: the stamp the
    release before issue 17's tree digest wrote); the digest is computed by the one
    definition the writer and the verifier use (`ownership_stamp`)."""
    from mar_tasks.formats import ownership_stamp as os_
    if data[:2] == b"PK":
        from mar_tasks.formats import zip_layout, zip_reader
        f = io.BytesIO(data)
        layout = zip_reader.read_layout(f, "x")
        content = os_.ContentDigest(kind or os_.stamp_kind(layout.comment) or os_.ZIP_KIND)
        zip_reader.check(f, layout, None, content)
        stamp = content.stamp_for_index(layout.index_digest)
        eocd_at = layout.end_of_zip - len(layout.comment) - zip_layout.EOCD.size
        assert data[eocd_at:eocd_at + 4] == zip_layout.EOCD_SIG
        end = bytearray(data[eocd_at:eocd_at + zip_layout.EOCD.size])
        end[-2:] = len(stamp).to_bytes(2, "little")   # the comment's length
        return data[:eocd_at] + bytes(end) + stamp + data[layout.end_of_zip:]
    content = os_.ContentDigest(os_.TGZ_KIND)
    content.data.update(data[10 + os_.STAMP_LEN + 1:])   # every byte after our gzip header
    return data[:10] + content.stamp() + data[10 + os_.STAMP_LEN:]


def stored_entries(data: bytes) -> List[Tuple[str, bytes]]:
    """(name, stored bytes) of every entry, in order, found with zipfile and the local header."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            at = info.header_offset
            nlen, elen = struct.unpack_from("<HH", data, at + 26)
            start = at + 30 + nlen + elen
            out.append((info.filename, data[start:start + info.compress_size]))
    return out


def forge_crc(data: bytes, at: int, new: bytes) -> bytes:
    """`data` with `new` written at `at`, and the 4 bytes after it chosen so that the
    CRC-32 stays the same (CRC is affine in the bits: solve 32 equations)."""
    target = zlib.crc32(data)
    out = bytearray(data)
    out[at:at + len(new)] = new
    fix = at + len(new)
    base = zlib.crc32(bytes(out[:fix] + b"\0\0\0\0" + out[fix + 4:]))
    effects = []
    for bit in range(32):
        trial = bytearray(out)
        trial[fix:fix + 4] = (1 << bit).to_bytes(4, "little")
        effects.append(zlib.crc32(bytes(trial)) ^ base)
    basis: Dict[int, tuple] = {}   # pivot bit -> (vector, which fix bits make it)
    for bit, vec in enumerate(effects):
        combo = 1 << bit
        for pivot in sorted(basis, reverse=True):
            if vec >> pivot & 1:
                vec, combo = vec ^ basis[pivot][0], combo ^ basis[pivot][1]
        if vec:
            basis[vec.bit_length() - 1] = (vec, combo)
    value, solution = target ^ base, 0
    for pivot in sorted(basis, reverse=True):
        if value >> pivot & 1:
            value, solution = value ^ basis[pivot][0], solution ^ basis[pivot][1]
    assert value == 0
    out[fix:fix + 4] = solution.to_bytes(4, "little")
    assert zlib.crc32(bytes(out)) == target
    return bytes(out)
