"""Where a ``.tar.gz`` is read back and checked: one streaming pass, nothing extracted.

The gzip layer is inflated in 1 MiB steps (constant memory) and its CRC-32 and length
trailer are checked; a stream cut short, a second gzip member, bytes after it, reserved
flag bits or header fields we never write are problems. The tar layer is parsed by hand,
header by header, and only a canonical subset is accepted, the one Python's tarfile (ours
and torch-model-archiver's) writes: POSIX ustar headers with strictly octal numbers,
regular files and folders, and at most one pax extension header per entry with canonical
records of a few keys. GNU long names, sparse files, global headers and everything else
on which GNU tar, Python's tarfile and TorchServe's commons-compress may disagree are
refused. Every byte after the gzip header feeds the stamp's digest.
"""
from __future__ import annotations

import re
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional

from mar_tasks.errors import ArchiveError
from mar_tasks.formats import gzip_layout
from mar_tasks.plan import limits
from mar_tasks.formats.ownership_stamp import TGZ_KIND, ContentDigest

STEP = 1 << 20
BLOCK = 512
USTAR_MAGIC = b"ustar\x0000"
KINDS = {b"0": "file", b"5": "folder", b"1": "hard link", b"2": "symbolic link",
         b"3": "character device", b"4": "block device", b"6": "FIFO"}
PAX = b"x"
# (offset, length) of the numeric fields: mode, uid, gid, size, mtime, chksum, devmajor, devminor
NUMERIC = ((100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8), (329, 8), (337, 8))
# At least one octal digit, then only NUL/space terminators, as tarfile writes them: GNU tar
# rejects a field of blanks (a blank size makes it scan the entry's data for headers).
_OCTAL = re.compile(rb"[0-7]+[\0 ]*")
DEVICE_FIELDS = (329, 337)   # tarfile leaves devmajor/devminor all NUL for files and folders
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
# Times of at most 10 integer digits (GNU tar, Python's utime and Java's Instant all take
# them) and nanoseconds at most (commons-compress refuses more digits); ids below 2**31.
_TIME = re.compile(r"-?(0|[1-9][0-9]{0,9})(\.[0-9]{1,9})?")
_ID = re.compile(r"0|[1-9][0-9]{0,8}|[1-2][0-9]{9}")
PAX_KEYS = {"path": None, "size": _DECIMAL, "mtime": _TIME, "atime": _TIME, "ctime": _TIME,
            "uid": _ID, "gid": _ID, "uname": None, "gname": None}
_ID_MAX = 2 ** 31 - 1


class CorruptStream(Exception):
    """The gzip layer is broken (message says how)."""


class GzipStream:
    """The decompressed bytes of a single-member gzip file, read strictly; every byte of the
    file after the header goes to `content` (the stamp's digest), as the writer hashed it."""

    def __init__(self, f: BinaryIO, label: str, content: Optional[ContentDigest] = None) -> None:
        self.f = f
        try:
            header = gzip_layout.read_header(f)
        except gzip_layout.HeaderError as exc:
            raise ArchiveError(f"{label}: {exc}" if "not a gzip" not in str(exc)
                               else f"{label} is not a gzip file") from None
        self.comment = header.comment
        self.problems: List[str] = []
        if header.flags & gzip_layout.FRESERVED:
            self.problems.append("the gzip header sets reserved flag bits (readers differ)")
        if header.flags & (gzip_layout.FEXTRA | gzip_layout.FHCRC):
            self.problems.append("the gzip header has an extra field or header CRC, which we "
                                 "and torch-model-archiver never write (readers differ)")
        self.content = content or ContentDigest(TGZ_KIND)
        self.d = zlib.decompressobj(-15)
        self.buf = bytearray()
        self.at = 0              # read position in buf
        self.crc = 0
        self.total = 0
        self.done = False
        self.full = False        # the last inflate stopped at its output limit

    def _read_file(self, n: int) -> bytes:
        data = self.f.read(n)
        self.content.data.update(data)
        return data

    def _more(self) -> bool:
        if self.done:
            return False
        block = self.d.unconsumed_tail
        if not block and not self.full:
            block = self._read_file(STEP)
            if not block:
                raise CorruptStream("the gzip stream is cut short (truncated file)")
        try:
            piece = self.d.decompress(block, STEP)
        except zlib.error as exc:
            raise CorruptStream(f"broken deflate stream ({exc})") from None
        self.full = len(piece) == STEP
        self.crc = zlib.crc32(piece, self.crc)
        self.total += len(piece)
        if self.at:
            del self.buf[:self.at]
            self.at = 0
        self.buf += piece
        if self.d.eof:
            self.done = True
            self._trailer()
        return True

    def _trailer(self) -> None:
        rest = self.d.unused_data
        if len(rest) < 9:
            rest += self._read_file(9 - len(rest))
        if len(rest) < gzip_layout.TRAILER.size:
            raise CorruptStream("the gzip trailer is cut short (truncated file)")
        crc, size = gzip_layout.TRAILER.unpack_from(rest)
        if crc != self.crc:
            raise CorruptStream(f"gzip CRC-32 mismatch ({self.crc:08x}, the trailer says {crc:08x})")
        if size != self.total & 0xFFFFFFFF:
            raise CorruptStream("gzip length in the trailer does not match the data")
        if len(rest) > gzip_layout.TRAILER.size:
            raise CorruptStream("bytes follow the gzip stream (a second member or appended data)")

    def read(self, n: int) -> bytes:
        while len(self.buf) - self.at < n and self._more():
            pass
        out = bytes(self.buf[self.at:self.at + n])
        self.at += len(out)
        return out

    def rest_is_padding(self, limit: int) -> bool:
        """Read to the end; True if what is left is at most `limit` zero bytes. Stops
        reading as soon as it is not."""
        seen = 0
        while True:
            piece = self.buf[self.at:]
            seen += len(piece)
            if seen > limit or piece.strip(b"\0"):
                return False
            self.buf.clear()
            self.at = 0
            if not self._more():
                return True


@dataclass
class TarEntry:
    name: str
    size: int
    kind: str


def _pax(data: bytes) -> Dict[str, str]:
    """The records of a pax header, accepted only in canonical form."""
    out: Dict[str, str] = {}
    at = 0
    while at < len(data):
        sp = data.find(b" ", at, at + 21)
        digits = data[at:sp] if sp > at else b""
        if not digits.isdigit() or not _DECIMAL.fullmatch(digits.decode()):
            raise ArchiveError("a pax header record's length is not plain decimal")
        end = at + int(digits)
        if end > len(data) or data[end - 1:end] != b"\n":
            raise ArchiveError("a pax header record's length does not match the record")
        key, eq, value = data[sp + 1:end - 1].partition(b"=")
        try:
            k, v = key.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError("a pax header record is not UTF-8") from None
        if not eq or k not in PAX_KEYS:
            raise ArchiveError(f"pax header key {k[:40]!r}: not one tarfile writes for a file")
        if k in out:
            raise ArchiveError(f"pax header key {k!r} given twice")
        pattern = PAX_KEYS[k]
        if pattern is not None and not pattern.fullmatch(v) or pattern is _ID and int(v) > _ID_MAX:
            raise ArchiveError(f"pax header {k}={v[:40]!r} is not a plain number in the range "
                               "every reader takes")
        out[k] = v
        at = end
    return out


def _header_problem(block: bytes) -> Optional[str]:
    if block[257:265] != USTAR_MAGIC:
        return "a tar header that is not POSIX ustar (GNU or old tar formats are read differently)"
    if block[500:512].strip(b"\0"):
        # commons-compress (TorchServe) takes "tar\0" at 508 for star's format, whose prefix
        # field is shorter: it would read another name, or refuse the archive.
        return "bytes after a tar header's prefix field (star's format, read differently)"
    for at, n in NUMERIC:
        value = block[at:at + n]
        if not _OCTAL.fullmatch(value) and not (at in DEVICE_FIELDS and value == bytes(n)):
            return "a tar header number that is not plain octal digits (blank, separators, base-256)"
    return None


def _ustar_name(block: bytes) -> str:
    """The name as stored (tarfile drops a folder's trailing '/', which we check)."""
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0]
    return (prefix + b"/" + name if prefix else name).decode("utf-8", "surrogateescape")


def entries(stream: GzipStream,
            on_data: Optional[Callable[[TarEntry], Optional[Callable[[bytes], None]]]] = None
            ) -> Iterator[TarEntry]:
    """Yield every tar entry; `on_data(entry)` may return a sink for that entry's bytes."""
    pending: Optional[Dict[str, str]] = None
    count = index_bytes = memory = 0
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            raise ArchiveError("the tar stream ends without its end-of-archive blocks")
        if block == bytes(BLOCK):
            if pending is not None:
                raise ArchiveError("a pax extension header before the end of the archive")
            return
        why = _header_problem(block)
        if why:
            raise ArchiveError(why)
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ArchiveError(f"bad tar header ({exc})") from None
        kind = block[156:157]
        if kind == PAX:
            if pending is not None:
                raise ArchiveError("two pax extension headers before one entry (readers differ)")
            if info.size > limits.MAX_EXTENSION_HEADER:
                raise ArchiveError(f"a pax extension header of {info.size:,} bytes; --verify reads "
                                   f"at most {limits.MAX_EXTENSION_HEADER:,}")
            data = stream.read(info.size + (-info.size % BLOCK))
            pending = _pax(data[:info.size])
            continue
        if kind not in KINDS:
            raise ArchiveError(f"tar entry type {kind!r} (global, GNU, sparse or vendor headers "
                               "are read differently by different readers)")
        pax = pending or {}
        pending = None
        size = int(pax.get("size", info.size))
        if "size" in pax and info.size not in (0, size):
            raise ArchiveError("a pax size and the tar header's size disagree")
        name = pax["path"] if "path" in pax else _ustar_name(block)
        count += 1
        index_bytes += len(name) - name.find("/") - 1   # kept in memory: bounded, as a zip's CD
        if count > limits.MAX_ENTRIES:
            raise ArchiveError(f"more than {limits.MAX_ENTRIES:,} entries; --verify reads at most that")
        memory += limits.name_memory(name) - name.find("/") - 1
        if memory > limits.MAX_NAME_MEMORY:
            raise ArchiveError(f"entry names past {limits.MAX_NAME_MEMORY:,} bytes in memory (non-ASCII "
                               "names count four per character); --verify reads at most that")
        if index_bytes > limits.MAX_INDEX_BYTES:
            raise ArchiveError(f"entry names past {limits.MAX_INDEX_BYTES:,} bytes together; "
                               "--verify reads at most that")
        if kind == b"5" and size:
            raise ArchiveError(f"folder entry {name[:80]!r} carries data")
        if kind != b"0":
            size = 0
        entry = TarEntry(name, size, KINDS[kind])
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
    content = ContentDigest(TGZ_KIND)
    stream = GzipStream(f, label, content)
    found: List[TarEntry] = []
    problems: List[str] = list(stream.problems)
    try:
        found.extend(entries(stream, on_data))
        # entries() stopped after the first end block: the second one is read here too
        if not stream.rest_is_padding(BLOCK + limits.MAX_TAR_PADDING):
            problems.append("data follows the tar end-of-archive blocks (more than "
                            f"{limits.MAX_TAR_PADDING:,} zero bytes of padding, or not zeros)")
            return found, problems, None, stream.comment
    except CorruptStream as exc:
        problems.append(str(exc))
        return found, problems, None, stream.comment
    except ArchiveError as exc:
        problems.append(str(exc))
        return found, problems, None, stream.comment
    return found, problems, content.hexdigest(), stream.comment


def read_entry(f: BinaryIO, label: str, name: str, limit: int) -> Optional[bytes]:
    """The bytes of the first entry called `name` (None if there is none before a problem);
    reading stops right after it."""
    out = bytearray()

    def sink(entry: TarEntry):
        if entry.name != name:
            return None
        if entry.size > limit:
            raise ArchiveError(f"{name} is larger than {limit:,} bytes")
        return out.extend

    stream = GzipStream(f, label)
    try:
        for entry in entries(stream, sink):
            if entry.name == name:
                return bytes(out)
    except CorruptStream as exc:
        raise ArchiveError(str(exc)) from None
    return None
