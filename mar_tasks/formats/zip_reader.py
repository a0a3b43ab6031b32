"""Where a zip (``.mar``) is read back and checked, without :mod:`zipfile` and without
extracting anything.

TorchServe's frontend unzips with Java's ``ZipInputStream``, which walks the *local*
headers from offset 0; Python's zipfile and ``unzip`` read the *central directory*, found by
searching backwards for the end record. Every place where such readers could see different
files is refused, so only a canonical subset is accepted: what our writer, Python's zipfile
(torch-model-archiver) and Java write. Local headers read one after another from offset 0
must be exactly the central directory's entries, in order, with the same name, method,
flags, CRC and sizes; the central directory must follow the last one; zip64 records only
where needed and only where every reader looks for them; no data descriptors, no extra
fields but zip64's, no comments holding zip signatures, no split archives. Every entry is
inflated in 1 MiB steps (constant memory, nothing written) and stops at its declared size,
so a zip bomb costs CPU time bounded by what deflate can produce (~1032x), never memory.
"""
from __future__ import annotations

import hashlib
import stat
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, List, Optional, Tuple

from isal import isal_zlib  # ISA-L's CRC-32: many times zlib's speed, the same values

from mar_tasks.display import shown
from mar_tasks.errors import ArchiveError
from mar_tasks.plan import limits
from mar_tasks.formats import zip_layout as zl
from mar_tasks.formats.ownership_stamp import ContentDigest

STEP = 1 << 20
MAX_DEFLATE_RATIO = 1032   # deflate cannot expand more than this (258 bytes per 2 bits)
VERSION_READ = zl.VERSION_ZIP64         # the highest "version needed" we accept (4.5)
FLAGS_READ = zl.FLAG_UTF8 | 0x6         # UTF-8 names; bits 1-2: deflate level hints only
HOSTS_READ = (0, 3)                     # "version made by" systems: MS-DOS, Unix
DOS_FOLDER = 0x10
DOS_READ = 0x01 | DOS_FOLDER | 0x20     # read-only, folder, archive: no other DOS attribute


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
    needed: int = zl.VERSION_DEFAULT
    made_by: int = 3 << 8


@dataclass
class ZipLayout:
    entries: List[ZipEntry]
    cd_offset: int
    cd_size: int
    cd_end: int            # where the zip64 end record or the end record starts
    size: int              # file size
    end_of_zip: int        # just after the end record and its comment
    comment: bytes
    problems: List[str] = field(default_factory=list)   # the layout is not canonical
    index_digest: bytes = b""                            # sha256 of the central directory


def _zip64_fields(extra: bytes, wanted: List[str],
                  local: bool = False) -> "Tuple[Optional[Dict[str, int]], str]":
    """The zip64 values of an extra field that must hold exactly `wanted` (in order), or
    (None, why not). A local header may end with our alignment record
    (:func:`mar_tasks.formats.zip_layout.align_extra`), which every reader skips alike."""
    found = None
    records = list(zl.extra_records(extra))
    if local and records and records[-1][0] == zl.ALIGN_EXTRA and zl.is_align_record(records[-1][1]):
        records.pop()
    for tag, body in records:
        if tag != zl.ZIP64_EXTRA:
            return None, ("an extra field cut short" if tag < 0 else
                          f"an extra field of type 0x{tag:04x} (only zip64's is read alike everywhere)")
        if found is not None:
            return None, "two zip64 extra fields"
        found = body
    if found is None:
        return ({}, "") if not wanted else (None, "sizes marked as zip64 without a zip64 extra field")
    if len(found) != 8 * len(wanted):
        return None, "a zip64 extra field holding other values than the header marks"
    return {k: int.from_bytes(found[8 * i:8 * i + 8], "little") for i, k in enumerate(wanted)}, ""


def _enclosing_end_record(tail: bytes, at: int) -> Optional[int]:
    """An earlier end-record signature whose record and comment end exactly where the file
    does: the one at `at` then sits inside its comment."""
    prev = tail.rfind(zl.EOCD_SIG, 0, at)
    while prev >= 0:
        if prev + zl.EOCD.size <= len(tail) and \
                prev + zl.EOCD.size + zl.EOCD.unpack_from(tail, prev)[7] == len(tail):
            return prev
        prev = tail.rfind(zl.EOCD_SIG, 0, prev)
    return None


def zip64_expected(count: int, cd_size: int, cd_offset: int, end: bytes) -> bool:
    """Whether a zip64 end record is one some writer we accept writes: ours from 0xFFFF
    entries or 4 GiB, or when the plain end record would spell a signature (`end`: the end
    record as written and its comment); Python's zipfile (torch-model-archiver) past 0xFFFF
    entries or past 2 GiB - 1 (its ZIP64_LIMIT) of central directory size or offset."""
    if count >= zl.MAX16 or cd_size > zl.ZIPFILE_ZIP64_LIMIT or cd_offset > zl.ZIPFILE_ZIP64_LIMIT:
        return True
    return zl.spells_signature(zl.EOCD.pack(zl.EOCD_SIG, 0, 0, count, count, cd_size, cd_offset,
                                            len(end) - zl.EOCD.size) + end[zl.EOCD.size:])


def _end_records(f: BinaryIO, label: str, size: int) -> "tuple":
    """(count, cd_size, cd_offset, cd_end, eocd_pos, comment, problems) from the end records."""
    tail_len = min(size, zl.TAIL_MAX)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = zl.find_end_record(tail)
    if at is None:
        raise ArchiveError(f"{label} is not a zip (no end-of-central-directory record)")
    _, disk, cd_disk, here, count, cd_size, cd_offset, clen = zl.EOCD.unpack_from(tail, at)
    eocd_pos = size - tail_len + at
    comment = tail[at + zl.EOCD.size:at + zl.EOCD.size + clen]
    problems = []
    if disk or cd_disk or here != count:
        problems.append("the end record names other disks (a split archive)")
    if _enclosing_end_record(tail, at) is not None or zl.spells_signature(tail[at:]):
        where = ("the end record's own fields spell" if zl.spells_signature(tail[at:at + zl.EOCD.size + 3])
                 else "the zip comment holds")
        problems.append(f"{where} a zip record signature (zipfile and unzip take the last one: "
                        "readers would disagree on where the zip ends)")
    cd_end = eocd_pos
    loc_at = at - zl.Z64_LOCATOR.size
    has_locator = loc_at >= 0 and tail[loc_at:loc_at + 4] == zl.Z64_LOCATOR_SIG
    # Python's zipfile writes 0xFFFF entries with no zip64 record (it needs one past 0xFFFF)
    saturated = cd_size == zl.MAX32 or cd_offset == zl.MAX32
    if saturated and not has_locator:
        raise ArchiveError(f"{label}: zip64 end record locator is missing")
    if has_locator:
        _, z64_disk, z64_pos, disks = zl.Z64_LOCATOR.unpack_from(tail, loc_at)
        expected = eocd_pos - zl.Z64_LOCATOR.size - zl.Z64_EOCD.size
        if z64_pos != expected or expected < 0:
            # Python's zipfile reads the record just before the locator; others follow the offset
            raise ArchiveError(f"{label}: the zip64 end record is not right before its locator")
        f.seek(z64_pos)
        rec = f.read(zl.Z64_EOCD.size)
        if rec[:4] != zl.Z64_EOCD_SIG:
            raise ArchiveError(f"{label}: zip64 end record is missing")
        _, body, _, needed, d1, d2, here64, count64, size64, off64 = zl.Z64_EOCD.unpack(rec)
        if body != zl.Z64_EOCD_BODY:
            problems.append("the zip64 end record carries extensible data")
        if z64_disk or disks != 1 or d1 or d2 or here64 != count64:
            problems.append("the zip64 end record names other disks (a split archive)")
        if needed > VERSION_READ:
            problems.append(f"the zip64 end record needs zip version {needed / 10:.1f}")
        if not zip64_expected(count64, size64, off64, tail[at:]):
            problems.append("a zip64 end record where none is needed (readers differ on which "
                            "record they believe)")
        for small, big, top in ((count, count64, zl.MAX16), (cd_size, size64, zl.MAX32),
                                (cd_offset, off64, zl.MAX32)):
            if small != top and small != big:
                problems.append("the end record and the zip64 end record disagree")
                break
        count, cd_size, cd_offset, cd_end = count64, size64, off64, z64_pos
    return count, cd_size, cd_offset, cd_end, eocd_pos, comment, problems


def read_layout(f: BinaryIO, label: str) -> ZipLayout:
    """Parse the end record(s) and the central directory; ArchiveError if it is no zip or
    too large to check, `problems` for what is not canonical."""
    size = f.seek(0, 2)
    count, cd_size, cd_offset, cd_end, eocd_pos, comment, problems = _end_records(f, label, size)
    if count > limits.MAX_ENTRIES:
        raise ArchiveError(f"{label} holds {count:,} entries; --verify reads at most "
                           f"{limits.MAX_ENTRIES:,}")
    if cd_size > limits.MAX_INDEX_BYTES:
        raise ArchiveError(f"{label}: central directory of {cd_size:,} bytes; --verify reads at "
                           f"most {limits.MAX_INDEX_BYTES:,}")
    if cd_offset + cd_size > cd_end or count > cd_size // zl.CENTRAL.size:
        raise ArchiveError(f"{label}: central directory does not fit in the file")
    f.seek(cd_offset)
    cd = f.read(cd_size)
    entries: List[ZipEntry] = []
    pos = memory = 0
    for _ in range(count):
        if pos + zl.CENTRAL.size > len(cd) or cd[pos:pos + 4] != zl.CENTRAL_SIG:
            raise ArchiveError(f"{label}: central directory entry {len(entries) + 1} is damaged")
        (_, made_by, needed, flags, method, _, _, crc, csize, usize, nlen, elen, clen, disk, _,
         external, offset) = zl.CENTRAL.unpack_from(cd, pos)
        start = pos + zl.CENTRAL.size
        raw = cd[start:start + nlen]
        extra = cd[start + nlen:start + nlen + elen]
        name = raw.decode("utf-8", "surrogateescape")
        memory += limits.name_memory(name)
        if memory > limits.MAX_NAME_MEMORY:
            raise ArchiveError(f"{label}: entry names past {limits.MAX_NAME_MEMORY:,} bytes in memory "
                               "(non-ASCII names count four per character); --verify reads at most that")
        wanted = [k for k, v in (("usize", usize), ("csize", csize), ("offset", offset)) if v == zl.MAX32]
        z64, why = _zip64_fields(extra, wanted)
        if z64 is None:
            problems.append(f"entry {shown(name)}: {why}")
            z64 = {}
        entries.append(ZipEntry(raw, name, flags, method, crc, z64.get("csize", csize),
                                z64.get("usize", usize), z64.get("offset", offset), external, needed,
                                made_by))
        if clen:
            problems.append(f"entry {shown(name)} has a comment (we and torch-model-archiver write none)")
        if disk:
            problems.append(f"entry {shown(name)} starts on disk {disk} (a split archive)")
        pos = start + nlen + elen + clen
    if pos != len(cd):
        raise ArchiveError(f"{label}: central directory size does not match its entries")
    return ZipLayout(entries, cd_offset, cd_size, cd_end, size, eocd_pos + zl.EOCD.size + len(comment),
                     comment, problems, hashlib.sha256(cd).digest())


def entry_problem(e: ZipEntry) -> Optional[str]:
    """Why one central directory entry is outside what every reader reads alike, or None."""
    if e.flags & zl.FLAG_ENCRYPTED:
        return "is encrypted: TorchServe cannot read it"
    if e.method not in (zl.STORED, zl.DEFLATED):
        return (f"uses compression method {e.method}: only store (0) and deflate (8) are "
                "readable everywhere")
    if e.flags & zl.FLAG_DESCRIPTOR:
        return "uses a data descriptor (flag bit 3), which we and torch-model-archiver never write"
    if e.flags & ~FLAGS_READ:
        return f"sets flag bits 0x{e.flags & ~FLAGS_READ:04x} that readers treat differently"
    if e.needed > VERSION_READ:
        return f"needs zip version {e.needed / 10:.1f}; 4.5 is the highest every reader supports"
    if not e.raw_name.isascii() and not e.flags & zl.FLAG_UTF8:
        return ("has a non-ASCII name without the UTF-8 flag (Python reads it as cp437, Java as "
                "UTF-8)")
    if len(e.raw_name) > limits.MAX_NAME_BYTES:
        return f"has a name longer than {limits.MAX_NAME_BYTES} bytes"
    if e.method == zl.STORED and e.csize != e.usize:
        return "is stored, yet its stored and real sizes differ"
    host = e.made_by >> 8
    if host not in HOSTS_READ:
        return (f"was made on host system {host}, whose file attributes unzip reads its own way "
                "(we, zipfile and Java write MS-DOS (0) or Unix (3))")
    if host != 3 and not e.raw_name.isascii():
        return ("has a non-ASCII name but was made on MS-DOS (host 0): unzip converts such names "
                "from CP437 despite the UTF-8 flag, so it lands under another name")
    dos = e.external_attr & 0xFFFF
    if dos & ~DOS_READ or (dos & DOS_FOLDER and not e.raw_name.endswith(b"/")):
        return (f"sets MS-DOS attributes 0x{dos:02x} (volume label, hidden, system, folder) "
                "that make unzip skip or change it")
    mode = stat.S_IFMT(e.external_attr >> 16)
    if (mode == stat.S_IFDIR) != e.raw_name.endswith(b"/") and mode in (stat.S_IFDIR, stat.S_IFREG):
        return "has a file type in its attributes other than its name says (folder or file)"
    return None


def _local(f: BinaryIO, pos: int) -> Optional[Tuple[tuple, bytes, bytes, int]]:
    f.seek(pos)
    head = f.read(zl.LOCAL.size)
    if len(head) < zl.LOCAL.size or head[:4] != zl.LOCAL_SIG:
        return None
    h = zl.LOCAL.unpack(head)
    rest = f.read(h[9] + h[10])
    return h, rest[:h[9]], rest[h[9]:], pos + zl.LOCAL.size + h[9] + h[10]


def local_header_bytes(h: tuple, raw: bytes, extra: bytes) -> bytes:
    """A local header's bytes as they stand in the file, from what :func:`_local` read."""
    return zl.LOCAL.pack(*h) + raw + extra


def end_records_bytes(f: BinaryIO, layout: ZipLayout) -> bytes:
    """The end records as the newest stamp covers them: from the central directory's end up
    to the end record's comment length (the stamp follows that)."""
    eocd_at = layout.end_of_zip - len(layout.comment) - zl.EOCD.size
    f.seek(layout.cd_end)
    return f.read(max(0, eocd_at + zl.EOCD.size - 2 - layout.cd_end))


def local_problem(e: ZipEntry, h: tuple, raw: bytes, extra: bytes) -> Optional[str]:
    if raw != e.raw_name or h[2] != e.flags or h[3] != e.method:
        return "local header disagrees with the central directory (name, flags or method)"
    if h[1] > VERSION_READ:
        return f"local header needs zip version {h[1] / 10:.1f}"
    csize, usize = h[7], h[8]
    if (csize == zl.MAX32) != (usize == zl.MAX32):
        return "local header marks only one size as zip64 (readers differ)"
    z64, why = _zip64_fields(extra, ["usize", "csize"] if csize == zl.MAX32 else [], local=True)
    if z64 is None:
        return f"local header has {why}"
    if (h[6], z64.get("csize", csize), z64.get("usize", usize)) != (e.crc, e.csize, e.usize):
        return "local header's CRC or sizes disagree with the central directory"
    return None


def inflate(f: BinaryIO, e: ZipEntry, data_at: int, sink: Optional[Callable[[bytes], object]] = None,
            raw_sink: Optional[Callable[[bytes], object]] = None) -> Optional[str]:
    """Read entry `e`'s data, check size and CRC; feed the bytes to `sink` (and the stored
    bytes to `raw_sink`). A problem or None."""
    f.seek(data_at)
    left, out, crc = e.csize, 0, 0
    # zlib, not ISA-L: ISA-L inflates some streams zlib refuses (Java and Python inflate with
    # zlib), so an archive ISA-L accepted could fail in TorchServe.
    d = zlib.decompressobj(-15) if e.method == zl.DEFLATED else None
    while left:
        block = f.read(min(STEP, left))
        if not block:
            return "data is cut short"
        left -= len(block)
        if raw_sink is not None:
            raw_sink(block)
        while True:
            if d is None:
                piece, block = block, b""
            else:
                try:
                    piece = d.decompress(block, STEP)
                except zlib.error as exc:
                    return f"broken deflate stream ({exc})"
                block = d.unconsumed_tail
            out += len(piece)
            if out > e.usize:
                return f"inflates to more than its declared {e.usize:,} bytes"
            crc = isal_zlib.crc32(piece, crc)
            if sink is not None:
                sink(piece)
            # Output held back by the step limit comes out on a call with no new input.
            if d is None or d.eof or (not block and len(piece) < STEP):
                break
        if d is not None and d.eof:
            break
    if d is not None and (not d.eof or d.unused_data or d.unconsumed_tail or left):
        return "deflate stream does not end where its stored size says"
    if out != e.usize:
        return f"holds {out:,} bytes, not the declared {e.usize:,}"
    if crc != e.crc:
        return f"bad CRC-32 ({crc:08x}, the header says {e.crc:08x})"
    return None


def check(f: BinaryIO, layout: ZipLayout, digests: Optional[Dict[str, str]] = None,
          content: Optional[ContentDigest] = None) -> List[str]:
    """Every way the local headers and data disagree with the central directory. With
    `digests`, also fill it with each entry's SHA-256, and `content` with what the stamp's
    digest covers, of its kind (same single pass over the data)."""
    problems: List[str] = []
    pos = 0
    for e in layout.entries:
        name = shown(e.name)
        why = entry_problem(e)
        if why:
            problems.append(f"entry {name} {why}")
            return problems
        if e.offset != pos:
            problems.append(f"entry {name}: local header at offset {e.offset}, expected {pos} "
                            "(a stream reader such as TorchServe's would see other entries)")
            return problems
        local = _local(f, pos)
        if local is None:
            problems.append(f"entry {name}: no local header at offset {pos}")
            return problems
        h, raw, extra, data_at = local
        why = local_problem(e, h, raw, extra)
        if why:
            problems.append(f"entry {name}: {why}")
            return problems
        if e.method == zl.DEFLATED and e.usize > e.csize * MAX_DEFLATE_RATIO + 1024:
            problems.append(f"entry {name} claims {e.usize:,} bytes from {e.csize:,}: more than "
                            "deflate can produce")
            return problems
        if data_at + e.csize > layout.cd_offset:
            problems.append(f"entry {name}: data runs into the central directory")
            return problems
        hasher = hashlib.sha256() if digests is not None and not e.name.endswith("/") else None
        stored = content.entry_hasher() if content is not None else None
        why = inflate(f, e, data_at, hasher.update if hasher else None,
                      stored.update if stored is not None else None)
        if hasher is not None:
            digests[e.name] = hasher.hexdigest()
        if stored is not None and content is not None:
            content.add_entry(stored.digest())
            content.add_header(local_header_bytes(h, raw, extra))
        if why:
            problems.append(f"corrupt data in {name}: {why}")
        pos = data_at + e.csize
    if pos != layout.cd_offset:
        problems.append(f"{layout.cd_offset - pos} bytes lie between the last entry and the "
                        "central directory (hidden from one kind of reader)")
    if layout.cd_offset + layout.cd_size != layout.cd_end:
        problems.append("bytes lie between the central directory and the end record")
    if layout.end_of_zip != layout.size:
        problems.append(f"{layout.size - layout.end_of_zip} bytes were appended after the zip's "
                        "end record")
    if content is not None and not problems:
        content.add_header(end_records_bytes(f, layout))
    return problems


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
