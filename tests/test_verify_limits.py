"""--verify on inputs built to exhaust it (issue 19, item 6): each ends in one problem line,
without a traceback, in time linear in the input and memory bounded (docs/formats.md,
"Limits"), whatever the archive claims."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from craft import HANDLER, MANIFEST, ZEntry, build_zip, good_entries, raw_header, tgz
from mar_tasks.plan import limits

CODE = ("import resource, sys; from mar_tasks.cli.inspect import main; rc = main(sys.argv[1:]);"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")


def run(args, cwd: Path, timeout: float = 60):
    """(exit code, stdout, stderr, seconds, peak RSS in MiB) of mar-inspect in a fresh process.
    Through sh, which forks: Linux keeps a process's peak RSS across exec."""
    start = time.monotonic()
    r = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" "$@"', CODE, *args], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - start
    err, _, rss = r.stderr.rpartition("RSS ")
    return r.returncode, r.stdout, err, seconds, int(rss or 0) // 1024


def refused(args, cwd: Path, text: str, timeout: float = 60, seconds: float = 20, rss: int = 300):
    rc, out, err, took, peak = run(args, cwd, timeout)
    assert rc == 1 and "Traceback" not in err, out + err
    lines = [ln for ln in out.splitlines() if ln.startswith("PROBLEM: ")] or err.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], out + err
    assert took < seconds and peak < rss, (took, peak)
    return took, peak


def _zip_with(tmp_path: Path, manifest: bytes = MANIFEST, handler: bytes = HANDLER) -> str:
    (tmp_path / "a.mar").write_bytes(build_zip([ZEntry(b"MAR-INF/MANIFEST.json", manifest, method=8),
                                                ZEntry(b"service.py", handler, method=8)]))
    return "a.mar"


@pytest.mark.parametrize("manifest,text", [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    (b'{"a":' * 500 + b"1" + b"}" * 500, "nested deeper than 64 levels"),
    (json.dumps({"runtime": "python", "model": {"modelName": "x", "handler": "service",
                                                "modelVersion": "1.0", "x": float("nan")}}).encode(), "NaN is not JSON"),
    (b'{"runtime": 1e999}', "out of range"),
    (b" " * (limits.MAX_MANIFEST_BYTES + 1), "larger than"),
])
def test_manifest_that_cannot_be_parsed_alike(tmp_path: Path, manifest: bytes, text: str):
    name = _zip_with(tmp_path, manifest)
    refused([name, "--verify"], tmp_path, text)
    rc, out, err, _, _ = run([name, "--json", "--verify"], tmp_path)
    assert rc == 1 and "Traceback" not in err
    if out:  # --json output is JSON: no bare NaN or Infinity
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} printed"))


@pytest.mark.parametrize("handler,text", [
    (b"x = " + b"(" * 60_000 + b")" * 60_000 + b"\ndef handle(d, c): pass\n", "handler service.py"),
    (b"x = " + b"-" * 120_000 + b"1\ndef handle(d, c): pass\n", "handler service.py"),
    (b"x = 1" + b" + 1" * 30_000 + b"\ndef handle(d, c): pass\n", "handler service.py"),
    (b"def handle(d, c): pass\n" + b"# padding\n" * 1_700_000, "larger than 131,072 bytes"),
])
def test_handler_that_exhausts_the_parser(tmp_path: Path, handler: bytes, text: str):
    took, peak = refused([_zip_with(tmp_path, handler=handler), "--verify"], tmp_path, text)
    print(f"handler of {len(handler):,} bytes: {took:.1f} s, {peak} MiB")


@pytest.mark.parametrize("unit", [b"1,", b"a\n", b"a;", b"f()\n"])
def test_largest_handler_checked_stays_bounded(tmp_path: Path, unit: bytes):
    """At the limit (128 KiB of the costliest plain sources the red team found: one long
    list, one name per line), ast's memory is what bounds us."""
    n = (limits.MAX_HANDLER_BYTES - 200) // len(unit)
    body = (b"x = [" + unit * n + b"]" if unit == b"1," else unit * n) + b"\ndef handle(d, c): pass\n"
    rc, out, err, took, peak = run([_zip_with(tmp_path, handler=body), "--verify"], tmp_path)
    assert rc == 0 and "verify: OK" in out, out + err
    assert took < 20 and peak < 200, (took, peak)
    print(f"handler at the limit ({unit!r}): {took:.1f} s, {peak} MiB")


def test_wide_names_are_bounded_by_their_memory(tmp_path: Path):
    """4,000-byte names with one emoji each take 16 KB each as str: a 64 MiB directory of
    them took 618 MB; their memory is bounded (limits.MAX_NAME_MEMORY) before it is reached."""
    head = (b"a" * 250 + b"/") * 15
    names = [head + "\U0001F600".encode() + b"b" * (4000 - len(head) - 10) + b"%06d" % i
             for i in range(limits.MAX_NAME_MEMORY // 16000 + 10)]
    path = tmp_path / "wide.mar"
    path.write_bytes(build_zip(good_entries(*[ZEntry(n, flags=0x800) for n in names])))
    took, peak = refused([path.name, "--verify"], tmp_path, "bytes in memory")
    assert peak < 200, peak
    print(f"{len(names):,} wide names: {took:.1f} s, {peak} MiB")


def test_folder_nested_1100_levels(tmp_path: Path):
    root = tmp_path / "m"
    (root / "MAR-INF").mkdir(parents=True)
    (root / "MAR-INF/MANIFEST.json").write_bytes(MANIFEST)
    (root / "service.py").write_bytes(HANDLER)
    fd = os.open(root, os.O_RDONLY)
    for _ in range(1100):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    try:
        refused(["m", "--verify"], tmp_path, "more than 256 folder levels")
    finally:  # shutil.rmtree (pytest's clean-up) recurses once per level: unwind by hand
        fds = [os.open(root, os.O_RDONLY)]
        while True:
            try:
                fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
            except FileNotFoundError:
                break
        for parent in reversed(fds[:-1]):
            os.rmdir("d", dir_fd=parent)
        for fd in fds:
            os.close(fd)


def test_tgz_name_deeper_than_the_limit(tmp_path: Path):
    deep = "x/" + "d/" * 300 + "f"
    from craft import pax_header, pax_record, file_block
    (tmp_path / "d.tar.gz").write_bytes(tgz(pax_header(pax_record("path", deep)), file_block("x/f", b"1")))
    refused(["d.tar.gz", "--verify"], tmp_path, "more than 256 folder levels")


def test_pax_header_of_512_mib_is_refused_without_reading_it(tmp_path: Path):
    head = raw_header(b"PaxHeaders/x", 512 << 20, b"x")
    (tmp_path / "p.tar.gz").write_bytes(tgz(head + b"1000 path=" + b"a" * 600))
    refused(["p.tar.gz", "--verify"], tmp_path, "a pax extension header of 536,870,912 bytes", seconds=5)


def test_10_gib_of_padding_after_the_tar_end_is_not_read(tmp_path: Path):
    """The deflate stream holds 10 GiB of zeros after the end blocks (10 MiB on disk: one
    flushed block repeated). Refused after the first 10 KiB past the end, in well under the
    seconds inflating it all would take."""
    from craft import ustar
    import tarfile
    body = ustar("x/", kind=tarfile.DIRTYPE) + ustar("x/MAR-INF/MANIFEST.json", MANIFEST) \
        + ustar("x/service.py", HANDLER) + bytes(1024)
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    head = c.compress(body) + c.flush(zlib.Z_FULL_FLUSH)
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    block = z.compress(bytes(1 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
    with open(tmp_path / "pad.tar.gz", "wb") as f:
        f.write(b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + head)
        for _ in range(10 * 1024):
            f.write(block)
        f.write(b"\x03\x00" + bytes(8))   # final empty block; the trailer is never reached
    took, _ = refused(["pad.tar.gz", "--verify"], tmp_path, "data follows the tar end-of-archive blocks",
                      seconds=5)
    print(f"10 GiB of padding: refused in {took:.2f} s")


def test_two_million_central_entries_claimed(tmp_path: Path):
    (tmp_path / "c.mar").write_bytes(build_zip(good_entries(), zip64={"count": 2_000_000, "here": 2_000_000},
                                               eocd={"count": 0xFFFF, "here": 0xFFFF}))
    refused(["c.mar", "--verify"], tmp_path, "holds 2,000,000 entries; --verify reads at most 200,000",
            seconds=5, rss=100)


def test_entries_at_the_limit_verify_in_bounded_memory(tmp_path: Path):
    """200,000 entries (the limit) verify in a few seconds and ~220 MiB; past it, one line
    at once."""
    entries = good_entries(*[ZEntry(b"d%03d/f%06d.txt" % (i // 1000, i), b"x")
                             for i in range(limits.MAX_ENTRIES - 2)])
    (tmp_path / "e.mar").write_bytes(build_zip(entries, zip64={}, eocd={"count": 0xFFFF, "here": 0xFFFF}))
    rc, out, err, took, peak = run(["e.mar", "--verify"], tmp_path)
    assert rc == 0 and out.rstrip().endswith("verify: OK"), out[-500:] + err
    assert took < 60 and peak < 350, (took, peak)
    print(f"{limits.MAX_ENTRIES:,} entries: {took:.1f} s, {peak} MiB")
    entries.append(ZEntry(b"one-more", b""))
    (tmp_path / "f.mar").write_bytes(build_zip(entries, zip64={}, eocd={"count": 0xFFFF, "here": 0xFFFF}))
    refused(["f.mar", "--verify"], tmp_path, "reads at most 200,000", seconds=5, rss=100)


def test_tgz_with_more_entries_than_the_limit(tmp_path: Path):
    import gzip
    from craft import ustar
    import tarfile
    head = b"".join([ustar("x/", kind=tarfile.DIRTYPE), ustar("x/MAR-INF/MANIFEST.json", MANIFEST),
                     ustar("x/service.py", HANDLER)])
    one = bytearray(raw_header(b"x/f0000000", 0, b"0"))
    parts = [head]
    for i in range(limits.MAX_ENTRIES):
        one[0:10] = b"x/f%07d" % i
        one[148:156] = b" " * 8
        one[148:156] = b"%06o\0 " % sum(one)
        parts.append(bytes(one))
    (tmp_path / "n.tar.gz").write_bytes(gzip.compress(b"".join(parts) + bytes(1024), 1))
    refused(["n.tar.gz", "--verify"], tmp_path, "more than 200,000 entries", seconds=30)


def test_many_bad_names_give_a_bounded_report(tmp_path: Path):
    (tmp_path / "n.mar").write_bytes(build_zip(good_entries(*[ZEntry(b"./f%d" % i, b"") for i in range(500)])))
    rc, out, err, _, _ = run(["n.mar", "--verify"], tmp_path)
    problems = [ln for ln in out.splitlines() if ln.startswith("PROBLEM: ")]
    assert rc == 1 and len(problems) == 21 and problems[-1] == "PROBLEM: ... and 480 more problems", out


def test_a_huge_folder_is_not_listed_whole(tmp_path: Path):
    """A folder's names are read only up to the room left under the item limit (a folder of
    millions of files would otherwise be listed into memory first)."""
    from mar_tasks.errors import ArchiveError
    from mar_tasks.formats.folder_reader import _names
    for i in range(10):
        (tmp_path / f"f{i}").write_bytes(b"")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert len(_names(fd, 10)) == 10
        with pytest.raises(ArchiveError, match="more than 200,000 items"):
            _names(fd, 9)
    finally:
        os.close(fd)
