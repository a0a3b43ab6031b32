"""The hostile archives of issue 19, by kind, each built byte by byte (tests/craft.py), and
good archives (ours in every format, and what Python's zipfile/tarfile, i.e.
torch-model-archiver, write) that must verify. `HOSTILE[name]()` gives (suffix, bytes)."""
from __future__ import annotations

import json
import tarfile
import unicodedata
from typing import Callable, Dict, Tuple

from craft import (EVIL, EVIL_MANIFEST, HANDLER, MANIFEST, ZEntry, build_zip, file_block, good_entries,
                   gzip_bytes, pax_header, pax_record, python_tgz, python_zip, raw_header, tgz, ustar)
from mar_tasks.formats import zip_layout as zl

Case = Callable[[], Tuple[str, bytes]]


def _zip(*more: ZEntry, **kw) -> Tuple[str, bytes]:
    return ".mar", build_zip(good_entries(*more), **kw)


def _tgz(*members: bytes, **kw) -> Tuple[str, bytes]:
    return ".tar.gz", tgz(*members, **kw)


def _odd_length(prefix: str, key: str, value: str, sep: str = "") -> bytes:
    """A pax record whose length is spelled oddly (`prefix` before it, `sep` inside it)."""
    body = f" {key}={value}\n"
    for n in range(len(body), len(body) + 30):
        digits = str(n)
        spelled = prefix + (digits[0] + sep + digits[1:] if sep else digits)
        if len(spelled) + len(body) == n:
            return (spelled + body).encode()
    raise AssertionError("no length fits")


def _xstar_member() -> bytes:
    """A POSIX header with a 140-byte prefix and "tar\\0" at 508: commons-compress reads it as
    star's format (131-byte prefix) and refuses the archive; tarfile and GNU tar extract it."""
    h = bytearray(raw_header(b"evil.py", len(EVIL), b"0"))
    prefix = ("x/" + "p" * 140).encode()
    h[345:345 + len(prefix)] = prefix
    h[508:512] = b"tar\0"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + EVIL + b"\0" * (-len(EVIL) % 512)


def _blank_size_smuggler() -> bytes:
    """An entry whose ustar size field is 12 blanks and whose size comes from a pax record:
    tarfile and commons-compress take the pax size and read the rest as its data; GNU tar
    rejects the header and finds a second manifest and evil.py in that data."""
    smuggled = file_block("x/MAR-INF/MANIFEST.json", EVIL_MANIFEST) + file_block("x/evil.py", EVIL)
    return pax_header(pax_record("size", str(len(smuggled)))) \
        + raw_header(b"x/pad.bin", 0, b"0", size_field=b" " * 12) + smuggled


def _blank_field(at: int, n: int) -> bytes:
    """A member whose numeric field at `at` is all blanks (checksum recomputed)."""
    h = bytearray(raw_header(b"x/c.py", len(EVIL), b"0"))
    h[at:at + n] = b" " * n
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + EVIL + b"\0" * (-len(EVIL) % 512)


def _lenient_inflate_zip() -> Tuple[str, bytes]:
    """An entry whose deflate stream ISA-L inflates but zlib (Java's and Python's inflate)
    refuses: found by flipping bits of a valid stream, with a fixed seed; its CRC and size
    are ISA-L's output, so only the stream itself is at fault."""
    import random
    import zlib
    from isal import isal_zlib
    rnd = random.Random(690)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    valid = c.compress(bytes(5000)) + c.flush()
    while True:
        s = bytearray(valid)
        for _ in range(rnd.choice([1, 2, 3])):
            s[rnd.randrange(len(s))] ^= 1 << rnd.randrange(8)
        try:
            d = isal_zlib.decompressobj(-15)
            out = d.decompress(bytes(s))
            if not d.eof or d.unused_data:
                continue
        except isal_zlib.error:
            continue
        try:
            zlib.decompress(bytes(s), -15)
        except zlib.error:
            break
    return ".mar", build_zip(good_entries(ZEntry(b"w.bin", out, method=zl.DEFLATED, stored=bytes(s))))


def _handler_zip(handler: str, files: Dict[str, bytes]) -> Tuple[str, bytes]:
    """A zip whose manifest names `handler`, holding `files` (what TorchServe would import)."""
    manifest = json.dumps({"runtime": "python", "model": {"modelName": "x", "handler": handler,
                                                          "modelVersion": "1.0"}}).encode()
    return ".mar", build_zip([ZEntry(b"MAR-INF/MANIFEST.json", manifest)]
                             + [ZEntry(n.encode(), d) for n, d in files.items()])


STOP = b"raise SystemExit('this is the module TorchServe imports')\n"

NFD = unicodedata.normalize("NFD", "café.txt").encode()
NFC = unicodedata.normalize("NFC", "café.txt").encode()
LOCAL_Z64 = zl.zip64_extra([len(HANDLER), len(HANDLER), 0])

HOSTILE: Dict[str, Case] = {
    # 1. names that collapse on extraction
    "zip ./ second manifest": lambda: _zip(ZEntry(b"./MAR-INF/MANIFEST.json", EVIL_MANIFEST), ZEntry(b"evil.py", EVIL)),
    "zip // manifest": lambda: _zip(ZEntry(b"MAR-INF//MANIFEST.json", EVIL_MANIFEST)),
    "zip /./ manifest": lambda: _zip(ZEntry(b"MAR-INF/./MANIFEST.json", EVIL_MANIFEST)),
    "zip folder entry with data": lambda: _zip(ZEntry(b"service.py/", EVIL)),
    "zip file beside folder": lambda: _zip(ZEntry(b"a", b"x"), ZEntry(b"a/b", b"y")),
    "zip file beside folder but for case": lambda: _zip(ZEntry(b"A", b"x"), ZEntry(b"a/b", b"y")),
    "zip file beside folder but for case, folder first": lambda: _zip(ZEntry(b"a/b", b"y"), ZEntry(b"A", b"x")),
    "zip name .": lambda: _zip(ZEntry(b".", b"x")),
    "zip MANIFEST.json/": lambda: _zip(ZEntry(b"MAR-INF/MANIFEST.json/")),
    "zip duplicate handler": lambda: _zip(ZEntry(b"service.py", EVIL)),
    "zip case twin": lambda: _zip(ZEntry(b"Service.py", EVIL)),
    "zip NFC/NFD twins": lambda: _zip(ZEntry(NFC, b"1", flags=zl.FLAG_UTF8), ZEntry(NFD, b"2", flags=zl.FLAG_UTF8)),
    "zip ..": lambda: _zip(ZEntry(b"../evil.py", EVIL)),
    "zip empty name": lambda: _zip(ZEntry(b"", EVIL)),
    "zip name component of 256 bytes": lambda: _zip(ZEntry(b"a/" + b"n" * 256, b"x")),
    "zip name component of 256 UTF-8 bytes": lambda: _zip(ZEntry("é".encode() * 128, b"x", flags=zl.FLAG_UTF8)),
    "tgz name component of 256 bytes": lambda: _tgz(ustar("x/" + "n" * 256, b"x", pax={})),
    "zip drive letter x:y": lambda: _zip(ZEntry(b"x:y", b"x")),
    "zip name of 4,096 bytes": lambda: _zip(ZEntry((b"n" * 255 + b"/") * 15 + b"n" * 256, b"x")),
    "zip name of 3,841 bytes": lambda: _zip(ZEntry((b"n" * 255 + b"/") * 15 + b"n", b"x")),
    "zip trailing dot folder": lambda: _zip(ZEntry(b"a/./", b"")),
    # 3. zip structures in odd places
    "zip data descriptor flag": lambda: _zip(ZEntry(b"w.bin", b"w" * 100, flags=zl.FLAG_DESCRIPTOR)),
    "zip flag bit 5": lambda: _zip(ZEntry(b"w.bin", b"w", flags=0x20)),
    "zip flag bit 6": lambda: _zip(ZEntry(b"w.bin", b"w", flags=0x40)),
    "zip version needed 6.3": lambda: _zip(ZEntry(b"w.bin", b"w", needed=63)),
    "zip local version needed 6.3": lambda: _zip(ZEntry(b"w.bin", b"w", local={"needed": 63})),
    "zip disk start 1": lambda: _zip(ZEntry(b"w.bin", b"w", disk=1)),
    "zip end record disk 1": lambda: _zip(eocd={"disk": 1, "cd_disk": 1}),
    "zip UTF-8 name without flag": lambda: _zip(ZEntry("é.py".encode(), b"x")),
    "zip zip64 end record not needed": lambda: _zip(zip64={}),
    "zip zip64 with extensible data": lambda: _zip(zip64={"body": zl.Z64_EOCD_BODY + 8, "extensible": b"\0" * 8},
                                                   eocd={"count": 0xFFFF, "here": 0xFFFF}),
    "zip zip64 record in the comment": lambda: _zip(comment=b"PK\x06\x06" + b"\0" * 52),
    "zip end record in the comment": lambda: _zip(comment=b"PK\x05\x06" + b"\0" * 18),
    "zip comment length and comment spell PK\\5\\6": lambda: _zip(comment=b"\x05\x06" + b"A" * 16 + b"\xff\xff"
                                                              + b"A" * (0x4B50 - 20)),
    "zip zip64 locator pointing elsewhere": lambda: _zip(zip64={"loc_offset": 0},
                                                         eocd={"count": 0xFFFF, "here": 0xFFFF}),
    "zip local zip64 extra with offset": lambda: _zip(ZEntry(b"w.bin", HANDLER, local_extra=LOCAL_Z64,
                                                              local={"csize": zl.MAX32, "usize": zl.MAX32})),
    "zip local zip64 extra not marked": lambda: _zip(ZEntry(b"w.bin", HANDLER, local_extra=zl.zip64_extra([1, 1]))),
    "zip unknown extra field": lambda: _zip(ZEntry(b"w.bin", b"w", central_extra=b"UT\x05\x00\x01\0\0\0\0")),
    "zip entry comment": lambda: _zip(ZEntry(b"w.bin", b"w", comment=b"hi")),
    "zip encrypted": lambda: _zip(ZEntry(b"w.bin", b"w", flags=1)),
    "zip method 12": lambda: _zip(ZEntry(b"w.bin", b"w", method=12)),
    "zip stored sizes differ": lambda: _zip(ZEntry(b"w.bin", b"w" * 10, csize=10, usize=9)),
    "zip prepended bytes": lambda: _zip(prefix=b"MZ" * 64),
    "zip entry hidden between": lambda: _zip(between=build_zip([ZEntry(b"evil.py", EVIL)])[:30 + 7 + len(EVIL)]),
    "zip appended bytes": lambda: (".mar", build_zip(good_entries()) + b"junk"),
    "zip file typed as folder": lambda: _zip(ZEntry(b"w.bin", b"w", external=0o40755 << 16)),
    "zip deflate stream only ISA-L inflates": _lenient_inflate_zip,
    "zip DOS volume label attribute": lambda: _zip(ZEntry(b"assets/a.txt", b"a", made_by=0x14, external=0x08)),
    "zip DOS attributes all set": lambda: _zip(ZEntry(b"assets/a.txt", b"a", made_by=0x14, external=0x17fffff)),
    "zip DOS folder attribute on a file": lambda: _zip(ZEntry(b"w.bin", b"w", made_by=0x14, external=0x10)),
    "zip MS-DOS host with a UTF-8 name": lambda: _zip(ZEntry(NFC, b"x", flags=zl.FLAG_UTF8, made_by=0x14)),
    "zip MS-DOS host UTF-8 handler": lambda: _zip(ZEntry("hé.py".encode(), EVIL, flags=zl.FLAG_UTF8, made_by=0x14)),
    "zip made on host 19": lambda: _zip(ZEntry(b"w.bin", b"w", made_by=(19 << 8) | 20)),
    "zip symlink": lambda: _zip(ZEntry(b"w.bin", b"/etc/passwd", external=0o120777 << 16)),
    # handlers TorchServe 0.12 would import from another file, or not find (red team F9-F11)
    "handler h.py beside package h/": lambda: _handler_zip("h.py", {"h.py": HANDLER, "h/__init__.py": STOP}),
    "handler h beside package h/": lambda: _handler_zip("h", {"h.py": HANDLER, "h/__init__.py": STOP}),
    "handler h.py beside h.so": lambda: _handler_zip("h.py", {"h.py": HANDLER, "h.so": b"\x7fELF"}),
    "handler h.py beside h.abi3.so": lambda: _handler_zip("h.py", {"h.py": HANDLER, "h.abi3.so": b"\x7fELF"}),
    "handler a.h with module a.py": lambda: _handler_zip("a.h", {"a.py": STOP, "a/h.py": HANDLER}),
    "handler named torch": lambda: _handler_zip("torch", {"torch.py": HANDLER}),
    "handler named yaml.py": lambda: _handler_zip("yaml.py", {"yaml.py": HANDLER}),
    "handler named psutil": lambda: _handler_zip("psutil", {"psutil.py": HANDLER}),
    "handler class and its alias": lambda: _handler_zip("h", {"h.py": b"class A:\n    def handle(self, d, c):\n"
                                                              b"        return d\n\nHandler = A\n"}),
    "handler handle only annotated": lambda: _handler_zip("h", {"h.py": b"from typing import Any\nhandle: Any\n"}),
    "handler handle deleted": lambda: _handler_zip("h", {"h.py": HANDLER + b"del handle\n"}),
    "handler handle only as a subscript": lambda: _handler_zip("h", {"h.py": b"d = {}\ntry:\n    d[handle] = 1\n"
                                                                     b"except NameError:\n    pass\n"}),
    # 2. tar extension headers
    "tgz pax path + GNU long name": lambda: _tgz(pax_header(pax_record("path", "x/a.py")),
                                                 raw_header(b"././@LongLink", 12, b"L") + b"x/evil.py\0\0\0" + b"\0" * 500,
                                                 file_block("x/b.py", EVIL)),
    "tgz two pax headers": lambda: _tgz(pax_header(pax_record("path", "x/MAR-INF/MANIFEST.json")),
                                        pax_header(pax_record("path", "x/evil.py")), file_block("x/c.py", EVIL)),
    "tgz global header": lambda: _tgz(pax_header(pax_record("path", "x/evil.py"), kind=b"g"),
                                      file_block("x/c.py", EVIL)),
    "tgz GNU sparse": lambda: _tgz(raw_header(b"x/w.bin", 0, b"S", magic=b"ustar  \0")),
    "tgz GNU magic": lambda: _tgz(raw_header(b"x/w.bin", 0, b"0", magic=b"ustar  \0")),
    "tgz pax length +NN": lambda: _tgz(pax_header(_odd_length("+", "path", "x/evil.py")), file_block("x/c.py", EVIL)),
    "tgz pax length 0NN": lambda: _tgz(pax_header(_odd_length("0", "path", "x/evil.py")), file_block("x/c.py", EVIL)),
    "tgz pax length N_N": lambda: _tgz(pax_header(_odd_length("", "path", "x/evil.py", "_")), file_block("x/c.py", EVIL)),
    "tgz pax length wrong": lambda: _tgz(pax_header(b"99 path=x/evil.py\n"), file_block("x/c.py", EVIL)),
    "tgz pax size with underscore": lambda: _tgz(pax_header(pax_record("size", "1_0")), file_block("x/c.py", b"0123456789")),
    "tgz pax size disagrees": lambda: _tgz(pax_header(pax_record("size", "5")), file_block("x/c.py", b"0123456789")),
    "tgz pax hdrcharset": lambda: _tgz(pax_header(pax_record("hdrcharset", "BINARY")), file_block("x/c.py", EVIL)),
    "tgz pax linkpath": lambda: _tgz(pax_header(pax_record("linkpath", "/etc")), file_block("x/c.py", EVIL)),
    "tgz pax duplicate key": lambda: _tgz(pax_header(pax_record("path", "x/a.py") + pax_record("path", "x/b.py")),
                                          file_block("x/c.py", EVIL)),
    "tgz pax header at the end": lambda: _tgz(pax_header(pax_record("path", "x/a.py"))),
    "tgz pax mtime out of range": lambda: _tgz(pax_header(pax_record("mtime", "9" * 40)), file_block("x/c.py", EVIL)),
    "tgz pax uid out of range": lambda: _tgz(pax_header(pax_record("uid", "9" * 20)), file_block("x/c.py", EVIL)),
    "tgz pax mtime with 100 decimals": lambda: _tgz(pax_header(pax_record("mtime", "1." + "9" * 100)),
                                                    file_block("x/c.py", EVIL)),
    "tgz size field with separator": lambda: _tgz(raw_header(b"x/c.py", 0, b"0", size_field=b"0000000_012\0")
                                                 + b"0123456789" + b"\0" * 502),
    "tgz size field base-256": lambda: _tgz(raw_header(b"x/c.py", 0, b"0", size_field=b"\x80" + b"\0" * 10 + b"\x0a")
                                           + b"0123456789" + b"\0" * 502),
    "tgz star format prefix": lambda: _tgz(_xstar_member()),
    # GNU tar refuses a header whose size is all blanks and scans its data for headers
    "tgz blank size field hides a manifest from GNU tar": lambda: _tgz(_blank_size_smuggler()),
    "tgz blank mode field": lambda: _tgz(_blank_field(100, 8)),
    "tgz blank mtime field": lambda: _tgz(_blank_field(136, 12)),
    "tgz blank devmajor field": lambda: _tgz(_blank_field(329, 8)),
    "tgz file named with /": lambda: _tgz(raw_header(b"x/service.py/", 0, b"0")),
    "tgz folder without /": lambda: _tgz(raw_header(b"x/d", 0, b"5")),
    "tgz folder with data": lambda: _tgz(raw_header(b"x/d/", 512, b"5") + EVIL.ljust(512, b"\0")),
    "tgz type 7": lambda: _tgz(raw_header(b"x/c.py", 0, b"7")),
    "tgz type NUL": lambda: _tgz(raw_header(b"x/c.py", 0, b"\0")),
    "tgz hard link": lambda: _tgz(ustar("x/l", kind=tarfile.LNKTYPE)),
    "tgz entry outside the top": lambda: _tgz(file_block("y/evil.py", EVIL)),
    "tgz entry without a top": lambda: _tgz(file_block("evil.py", EVIL)),
    "tgz top as a file": lambda: _tgz(file_block("x", EVIL)),
    "tgz ./ second manifest": lambda: _tgz(file_block("x/./MAR-INF/MANIFEST.json", EVIL_MANIFEST)),
    "tgz // handler": lambda: _tgz(file_block("x//service.py", EVIL)),
    "tgz duplicate handler": lambda: _tgz(file_block("x/service.py", EVIL)),
    "tgz file beside folder": lambda: _tgz(file_block("x/a", b"1"), file_block("x/a/b", b"2")),
    "tgz file beside folder but for case": lambda: _tgz(file_block("x/a", b"1"), file_block("x/A/b", b"2")),
    "tgz case twin": lambda: _tgz(file_block("x/Service.py", EVIL)),
    "tgz padding past a record": lambda: _tgz(tail=b"\0" * (1024 + 20480)),
    "tgz padding one block past a record": lambda: _tgz(tail=b"\0" * (1024 + 10240 + 512), pad_to_record=False),
    "tgz data after the end": lambda: _tgz(tail=b"\0" * 1024 + file_block("x/evil.py", EVIL)),
    "tgz entry after one zero block": lambda: _tgz(tail=b"\0" * 512 + file_block("x/evil.py", EVIL) + b"\0" * 1024),
    "tgz no end blocks": lambda: _tgz(tail=b"", pad_to_record=False),
    "gzip reserved flag bits": lambda: _tgz(gzip_flags=0x20),
    "gzip extra field": lambda: _tgz(gzip_flags=4, gzip_extra=b"AB\x02\x00hi"),
    "gzip header CRC": lambda: _tgz(gzip_flags=2),
    "gzip two members": lambda: (".tar.gz", tgz() + gzip_bytes(b"\0" * 1024)),
}

GOOD: Dict[str, Case] = {
    "zip crafted minimal": lambda: _zip(),
    "zip crafted with a folder entry": lambda: _zip(ZEntry(b"assets/", external=0o40755 << 16), ZEntry(b"assets/a.txt", b"a")),
    "zip crafted as Java writes it": lambda: _zip(ZEntry(b"w.bin", b"w", made_by=20, external=0)),
    "zip crafted MS-DOS read-only, archive": lambda: _zip(ZEntry(b"w.bin", b"w", made_by=20, external=0x21)),
    "zip crafted UTF-8 name": lambda: _zip(ZEntry(NFC, b"x", flags=zl.FLAG_UTF8)),
    "zip name component of 255 bytes": lambda: _zip(ZEntry(b"a/" + b"n" * 255, b"x")),
    "zip colon inside a name": lambda: _zip(ZEntry(b"ab:c", b"x")),
    "zip name of 3,840 bytes": lambda: _zip(ZEntry((b"n" * 250 + b"/") * 15 + b"n" * 75, b"x")),
    "handler a.h in package a/ with __init__.py": lambda: _handler_zip("a.h", {"a/__init__.py": b"", "a/h.py": HANDLER}),
    "handler h.py beside h.pyc": lambda: _handler_zip("h.py", {"h.py": HANDLER, "h.pyc": b"\0" * 16}),
    "handler one class twice under one name": lambda: _handler_zip("h", {"h.py": b"import os\nif os.sep == '/':\n"
                                                                         b"    class A:\n        def handle(self, d, c): pass\n"
                                                                         b"else:\n    class A:\n        def handle(self, d, c): pass\n"}),
    "zip as zipfile writes it": lambda: (".mar", python_zip({"MAR-INF/MANIFEST.json": MANIFEST, "service.py": HANDLER,
                                                             "assets/w.bin": bytes(70000), "é/a.txt": b"a"})),
    "tgz as tarfile writes it": lambda: (".tar.gz", python_tgz({"MAR-INF/MANIFEST.json": MANIFEST, "service.py": HANDLER,
                                                                "assets/w.bin": bytes(70000), "é/" + "n" * 120: b"long"})),
    "tgz crafted minimal": lambda: _tgz(),
    "tgz crafted pax times and ids": lambda: _tgz(pax_header(pax_record("mtime", "-1.123456789") + pax_record("atime", "0")
                                                             + pax_record("uid", "2147483647") + pax_record("uname", "é")),
                                                  file_block("x/c.txt", b"c")),
    "tgz gzip with a name": lambda: _tgz(gzip_flags=8),
    "tgz a record of padding after the end blocks": lambda: _tgz(tail=b"\0" * (1024 + 10240), pad_to_record=False),
}
