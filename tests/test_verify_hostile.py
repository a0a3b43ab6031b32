"""mar-inspect --verify against archives crafted to fool it.

Every case must end in exit 1 with a PROBLEM line (or, for what cannot even be listed, one
error line), never a traceback, never a hang, never a write, never a false "verify: OK".
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from conftest import HANDLER, all_files, run_cli, write_tree

MANIFEST = json.dumps({"runtime": "python", "model": {
    "modelName": "x", "handler": "service", "modelVersion": "1.0"}}).encode()


def inspect(args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mar_tasks.cli.inspect", *args], cwd=cwd,
                          capture_output=True, timeout=60, **kw)


def assert_problem(r: subprocess.CompletedProcess, text: str) -> None:
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1, out + err
    assert "Traceback" not in err and "verify: OK" not in out.splitlines(), out + err
    assert "PROBLEM: " in out and text in out, out + err


def good_zip(tmp_path: Path, fmt: str = "default") -> Path:
    write_tree(tmp_path / "model", {"service.py": HANDLER, "w.bin": bytes(range(256)) * 400})
    assert run_cli(["--model-name", "m", "--model-path", "model", "--handler", "service",
                    "--archive-format", fmt, "-q"], tmp_path) == 0
    return tmp_path / ("m.tar.gz" if fmt == "tgz" else "m.mar")


def offsets(path: Path, name: str):
    """(local header offset, data offset, central record offset) of one entry."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    nlen, elen = struct.unpack_from("<HH", data, info.header_offset + 26)
    cd_off = struct.unpack_from("<I", data, data.rindex(b"PK\x05\x06") + 16)[0]
    central = data.index(b"PK\x01\x02" + data[cd_off + 4:cd_off + 4], cd_off)
    while data[central + 46:central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    return info.header_offset, info.header_offset + 30 + nlen + elen, central


def patch(path: Path, at: int, new: bytes, out: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[at:at + len(new)] = new
    out.write_bytes(bytes(data))
    return out


# --- corrupt member data, the manifest included ---------------------------------------------

@pytest.mark.parametrize("member", ["MAR-INF/MANIFEST.json", "service.py", "w.bin"])
def test_bad_crc_in_any_entry(tmp_path: Path, member: str):
    src = good_zip(tmp_path, "zip-store")
    _, data_at, _ = offsets(src, member)
    patch(src, data_at + 3, bytes([src.read_bytes()[data_at + 3] ^ 0x20]), tmp_path / "b.mar")
    assert_problem(inspect(["b.mar", "--verify"], tmp_path), "bad CRC-32")


@pytest.mark.parametrize("member", ["MAR-INF/MANIFEST.json", "w.bin"])
def test_broken_deflate_stream(tmp_path: Path, member: str):
    src = good_zip(tmp_path)
    _, data_at, _ = offsets(src, member)
    patch(src, data_at, b"\xff" * 8, tmp_path / "b.mar")
    r = inspect(["b.mar", "--verify"], tmp_path)
    assert_problem(r, "corrupt data in")


@pytest.mark.parametrize("field,value,text", [
    (6, b"\x09\x00", "is encrypted"),          # general purpose flags: bit 0
    (8, b"\x63\x00", "compression method 99"),  # method
])
def test_flags_and_methods_that_readers_differ_on(tmp_path: Path, field, value, text):
    src = good_zip(tmp_path)
    local, _, central = offsets(src, "service.py")
    patch(src, local + field, value, tmp_path / "b.mar")
    patch(tmp_path / "b.mar", central + field + 2, value, tmp_path / "b.mar")
    assert_problem(inspect(["b.mar", "--verify"], tmp_path), text)


def test_central_size_claiming_4_gib_for_a_small_entry(tmp_path: Path):
    src = good_zip(tmp_path)
    _, _, central = offsets(src, "service.py")
    patch(src, central + 24, struct.pack("<I", 0xFFFFFFFE), tmp_path / "b.mar")
    assert_problem(inspect(["b.mar", "--verify"], tmp_path), "size")


@pytest.mark.parametrize("what", ["crc", "name", "size"])
def test_local_header_disagreeing_with_central_directory(tmp_path: Path, what: str):
    src = good_zip(tmp_path)
    local, _, _ = offsets(src, "service.py")
    at, new = {"crc": (local + 14, b"\0\0\0\0"), "name": (local + 30, b"S"),
               "size": (local + 22, b"\x01\0\0\0")}[what]
    patch(src, at, new, tmp_path / "b.mar")
    assert_problem(inspect(["b.mar", "--verify"], tmp_path), "local header")


def test_entry_hidden_from_the_central_directory(tmp_path: Path):
    """A local entry the central directory does not list: Java's reader would load it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        z.writestr("service.py", HANDLER)
        z.writestr("evil.py", "import os\n")
    data = bytearray(buf.getvalue())
    eocd = data.rindex(b"PK\x05\x06")
    last = data.rindex(b"PK\x01\x02", 0, eocd)
    count, cd_size = struct.unpack_from("<HH", data, eocd + 8)[0], struct.unpack_from("<I", data, eocd + 12)[0]
    removed = eocd - last
    struct.pack_into("<HHI", data, eocd + 8, count - 1, count - 1, cd_size - removed)
    del data[last:eocd]
    (tmp_path / "h.mar").write_bytes(bytes(data))
    assert_problem(inspect(["h.mar", "--verify"], tmp_path), "between the last entry and the central directory")


def test_bytes_appended_after_the_end_record(tmp_path: Path):
    src = good_zip(tmp_path)
    (tmp_path / "b.mar").write_bytes(src.read_bytes() + b"hidden payload")
    assert_problem(inspect(["b.mar", "--verify"], tmp_path), "appended after the zip's end record")


# --- tgz ------------------------------------------------------------------------------------

def test_tgz_with_broken_gzip_crc_or_cut_short(tmp_path: Path):
    src = good_zip(tmp_path, "tgz").read_bytes()
    bad = bytearray(src)
    bad[-8] ^= 0xFF
    (tmp_path / "crc.tar.gz").write_bytes(bytes(bad))
    assert_problem(inspect(["crc.tar.gz", "--verify"], tmp_path), "gzip CRC-32 mismatch")
    (tmp_path / "cut.tar.gz").write_bytes(src[:-100])
    r = inspect(["cut.tar.gz", "--verify"], tmp_path)
    assert_problem(r, "cut short")
    (tmp_path / "more.tar.gz").write_bytes(src + src)
    assert_problem(inspect(["more.tar.gz", "--verify"], tmp_path), "bytes follow the gzip stream")


def test_tgz_modified_after_writing_breaks_its_stamp(tmp_path: Path):
    """Re-gzip the same tar with our comment: every CRC is fine, the stamp is not."""
    src = good_zip(tmp_path, "tgz")
    import gzip
    raw = gzip.decompress(src.read_bytes())
    comment = src.read_bytes()[10:src.read_bytes().index(b"\0", 10)]
    raw = raw.replace(b"def handle(data, context)", b"def handle(data, contexT)")
    body = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = body.compress(raw) + body.flush()
    out = b"\x1f\x8b\x08\x10\0\0\0\0\0\xff" + comment + b"\0" + payload + struct.pack(
        "<II", zlib.crc32(raw), len(raw))
    (tmp_path / "t.tar.gz").write_bytes(out)
    assert_problem(inspect(["t.tar.gz", "--verify"], tmp_path), "does not match its mar_tasks stamp")


@pytest.mark.parametrize("kind,text", [(tarfile.SYMTYPE, "symlink entry"), (tarfile.LNKTYPE, "hard link entry"),
                                       (tarfile.FIFOTYPE, "is a FIFO"), (tarfile.CHRTYPE, "character device"),
                                       (tarfile.BLKTYPE, "block device")])
def test_tgz_entries_other_than_files_and_folders(tmp_path: Path, kind, text):
    with tarfile.open(tmp_path / "h.tar.gz", "w:gz") as t:
        for name, data in (("x/MAR-INF/MANIFEST.json", MANIFEST), ("x/service.py", HANDLER.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("x/odd")
        info.type = kind
        info.linkname = "/etc/passwd"
        t.addfile(info)
    assert_problem(inspect(["h.tar.gz", "--verify"], tmp_path), text)


# --- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["evil\x1b[2J.txt", "a\nPROBLEM: none\nverify: OK", "rtl\u202eexe.py"])
def test_control_characters_in_names_are_escaped_and_refused(tmp_path: Path, name: str):
    with zipfile.ZipFile(tmp_path / "n.mar", "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        z.writestr("service.py", HANDLER)
        z.writestr(name, "x")
    for args in (["n.mar"], ["n.mar", "--json"], ["n.mar", "--verify"]):
        r = inspect(args, tmp_path)
        out = r.stdout.decode()
        assert "\x1b" not in out and "\u202e" not in out and "\nverify: OK" not in out
        assert "Traceback" not in r.stderr.decode()
    assert_problem(inspect(["n.mar", "--verify"], tmp_path), "control or invisible characters")


def test_name_that_is_not_utf8_under_a_strict_locale(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "n.mar", "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        z.writestr("service.py", HANDLER)
        z.writestr("xAAAx.bin", "x")
    data = (tmp_path / "n.mar").read_bytes().replace(b"AAA", b"\xff\xfe\xfd")
    (tmp_path / "n.mar").write_bytes(data)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"}
    r = inspect(["n.mar"], tmp_path, env=env)
    assert r.returncode == 0 and "x\\xff\\xfe\\xfdx.bin" in r.stdout.decode(), r.stderr
    r = inspect(["n.mar", "--json"], tmp_path, env=env)
    assert r.returncode == 0 and "x\\xff\\xfe\\xfdx.bin" in [f["name"] for f in json.loads(r.stdout)["files"]]
    assert_problem(inspect(["n.mar", "--verify"], tmp_path, env=env), "not valid UTF-8")


# --- what is not an archive -----------------------------------------------------------------

def test_fifo_as_the_archive_is_refused_without_blocking(tmp_path: Path):
    os.mkfifo(tmp_path / "p.mar")
    for args in (["p.mar"], ["p.mar", "--verify"]):
        r = inspect(args, tmp_path)
        assert r.returncode == 1 and "is not a regular file or a folder" in r.stderr.decode()
        assert len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("where", ["MAR-INF/MANIFEST.json", "service.py", "sub/data.bin"])
def test_fifo_inside_a_no_archive_folder_is_never_opened(tmp_path: Path, where: str):
    write_tree(tmp_path / "f", {"MAR-INF/MANIFEST.json": MANIFEST, "service.py": HANDLER, "sub/.k": ""})
    (tmp_path / "f" / where).unlink(missing_ok=True)
    os.mkfifo(tmp_path / "f" / where)
    r = inspect(["f", "--verify"], tmp_path)
    assert_problem(r, "archives must hold regular files and folders")


def test_symlink_inside_a_folder_is_never_followed(tmp_path: Path):
    write_tree(tmp_path, {"secret.py": "def handle(d, c): pass\n",
                          "f/MAR-INF/MANIFEST.json": MANIFEST})
    os.symlink(tmp_path / "secret.py", tmp_path / "f/service.py")
    assert_problem(inspect(["f", "--verify"], tmp_path), "symlink entry")


def test_folder_without_manifest_and_missing_argument_are_one_line(tmp_path: Path):
    write_tree(tmp_path, {"f/service.py": HANDLER})
    r = inspect(["f"], tmp_path)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and b"has no MAR-INF" in r.stderr
    assert_problem(inspect(["f", "--verify"], tmp_path), "has no MAR-INF/MANIFEST.json")
    r = inspect([], tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and b"mar-inspect: error:" in r.stderr


# --- zip bombs ------------------------------------------------------------------------------

def test_zip_bomb_is_checked_in_constant_memory(tmp_path: Path):
    """An entry of 256 MiB of zeros (~0.25 MiB stored) verifies with a small, fixed peak RSS:
    --verify inflates in 1 MiB steps and keeps nothing."""
    with zipfile.ZipFile(tmp_path / "z.mar", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        z.writestr("service.py", HANDLER)
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(256):
                f.write(block)
    code = ("import resource, sys; from mar_tasks.cli.inspect import main; rc = main(['z.mar', '--verify']);"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    # Through sh, which forks: Linux keeps a process's peak RSS across exec, so a child
    # exec'ed straight from pytest would report pytest's own peak.
    r = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0"; exit $?', code], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "verify: OK" in r.stdout, r.stdout + r.stderr
    rss_kib = int(r.stdout.rsplit("RSS", 1)[1])
    assert rss_kib < 100 * 1024, rss_kib


def test_entry_claiming_more_than_deflate_can_produce(tmp_path: Path):
    src = good_zip(tmp_path)
    local, _, central = offsets(src, "w.bin")  # deflated: 966 bytes stored
    size = struct.pack("<I", 0xF0000000)
    patch(src, local + 22, size, tmp_path / "b.mar")
    patch(tmp_path / "b.mar", central + 24, size, tmp_path / "b.mar")
    assert_problem(inspect(["b.mar", "--verify"], tmp_path), "more than deflate can produce")


def test_verify_never_writes(tmp_path: Path):
    src = good_zip(tmp_path)
    before = all_files(tmp_path)
    for args in (["m.mar"], ["m.mar", "--verify"], ["m.mar", "--json", "--verify"]):
        assert inspect(args, tmp_path).returncode == 0
    assert all_files(tmp_path) == before and src.exists()


def _pax_tgz(path: Path, pax: dict) -> None:
    import gzip
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("x/MAR-INF/MANIFEST.json")
        info.size = len(MANIFEST)
        info.pax_headers = pax
        t.addfile(info, io.BytesIO(MANIFEST))
    path.write_bytes(gzip.compress(buf.getvalue()))


@pytest.mark.parametrize("case", ["gzip-extra-cut", "pax-size-not-a-number", "pax-size-negative"])
def test_malformed_headers_are_one_line_or_a_problem(tmp_path: Path, case: str):
    """Found by targeted fuzzing: each once gave a traceback."""
    if case == "gzip-extra-cut":
        (tmp_path / "h.tar.gz").write_bytes(b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x05")
    else:
        _pax_tgz(tmp_path / "h.tar.gz", {"size": "zz" if "number" in case else "-5"})
    for args in (["h.tar.gz"], ["h.tar.gz", "--verify"]):
        r = inspect(args, tmp_path)
        assert r.returncode == 1 and b"Traceback" not in r.stderr, r.stdout + r.stderr
        assert b"verify: OK" not in r.stdout


def test_folder_swapped_for_a_link_while_verifying_is_not_followed(tmp_path: Path):
    """Issue 19, item 7: MAR-INF replaced by a link to an outside folder between listing and
    reading. The folder is read through directory descriptors opened with O_NOFOLLOW, so the
    outside manifest is never read."""
    from mar_tasks.errors import ArchiveError
    from mar_tasks.formats.archive_reader import Archive
    write_tree(tmp_path, {"f/MAR-INF/MANIFEST.json": MANIFEST, "f/service.py": HANDLER,
                          "outside/MANIFEST.json": MANIFEST.replace(b'"x"', b'"evil"')})
    archive = Archive(tmp_path / "f")           # listed: MAR-INF is a real folder
    os.rename(tmp_path / "f/MAR-INF", tmp_path / "moved")
    os.symlink(tmp_path / "outside", tmp_path / "f/MAR-INF")
    with pytest.raises(ArchiveError, match="cannot read MAR-INF/MANIFEST.json"):
        archive.manifest()
    os.unlink(tmp_path / "f/MAR-INF")
    os.rename(tmp_path / "moved", tmp_path / "f/MAR-INF")
    assert archive.manifest()["model"]["modelName"] == "x"


def test_stamp_of_an_older_mar_tasks_is_named_as_such(tmp_path: Path):
    """Stamps before issue 19 hashed the headers only: they vouch for no data, so --verify
    says to rebuild rather than calling the archive modified."""
    from craft import build_zip, good_entries
    (tmp_path / "o.mar").write_bytes(build_zip(good_entries(), comment=b"mar_tasks " + b"0" * 64))
    assert_problem(inspect(["o.mar", "--verify"], tmp_path), "from an older mar_tasks")


def test_end_record_signature_in_the_comment_is_named_so(tmp_path: Path):
    from craft import build_zip, good_entries
    path = tmp_path / "c.mar"
    path.write_bytes(build_zip(good_entries(), comment=b"PK\x05\x06" + b"\0" * 18))
    assert_problem(inspect([str(path), "--verify"], tmp_path), "the zip comment holds a zip record signature")


def _end_records_of(tail: bytes) -> list:
    from mar_tasks.formats import zip_reader
    return zip_reader._end_records(io.BytesIO(tail), "x", len(tail))[-1]


def test_zip64_end_record_as_zipfile_writes_it_past_2_gib():
    """zipfile writes a zip64 end record once the directory offset passes 2**31 - 1 (its
    ZIP64_LIMIT), with the real values in the end record too: accepted, as is no zip64
    record below that; an unneeded one still is not."""
    from craft import build_zip
    from mar_tasks.formats import zip_layout as zl
    off = (1 << 31) + 10
    tail = build_zip([], zip64={"offset": off}, eocd={"offset": off})
    assert _end_records_of(tail) == []
    assert "a zip64 end record where none is needed" in " ".join(_end_records_of(build_zip([], zip64={})))
    assert zl.ZIPFILE_ZIP64_LIMIT == zipfile.ZIP64_LIMIT


def test_zipfile_with_65535_entries_verifies(tmp_path: Path):
    """At exactly 0xFFFF entries zipfile writes no zip64 end record (it needs one past it)."""
    path = tmp_path / "many.mar"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        z.writestr("service.py", HANDLER)
        for i in range(0xFFFF - 2):
            z.writestr(f"f/{i}", b"")
    r = inspect([str(path), "--verify"], tmp_path)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_our_zip_whose_directory_offset_spells_a_signature_verifies(tmp_path: Path):
    """A central directory at 0x06054b50 would spell "PK\\5\\6" in the end record (the red
    team's 101,009,898-byte zip-store model): the writer uses zip64's saturated fields."""
    target = 0x06054B50

    def build(size: int) -> Path:
        model = tmp_path / f"m{size}"
        write_tree(model, {"h.py": HANDLER})
        with open(model / "w.bin", "wb") as f:
            f.truncate(size)
        out = tmp_path / f"o{size}"
        assert run_cli(["--model-name", "big", "--handler", "h.py", "--model-path", str(model),
                        "--export-path", str(out), "--archive-format", "zip-store", "-q"], tmp_path) == 0
        return out / "big.mar"

    def cd_offset(path: Path) -> int:
        with zipfile.ZipFile(path) as z:
            return z.start_dir

    probe = 2 << 20  # large enough to be block-aligned, as the real one is
    small = build(probe)
    size = probe + target - cd_offset(small)
    big = build(size)
    assert cd_offset(big) == target
    end = big.read_bytes()[-200:]
    from mar_tasks.formats.ownership_stamp import stamp_for
    assert end.rfind(b"PK\x05\x06") == len(end) - 22 - len(stamp_for("0" * 64))   # the last one is the record
    r = inspect([str(big), "--verify"], tmp_path)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    with zipfile.ZipFile(big) as z:
        assert z.getinfo("w.bin").file_size == size and z.testzip() is None


@pytest.mark.parametrize("fmt,wrong", [("default", "m.zip"), ("default", "m.tar.gz"), ("tgz", "m.mar")])
def test_archive_named_for_the_other_reader_is_refused(tmp_path: Path, fmt: str, wrong: str):
    """TorchServe 0.12 picks the zip reader iff the name ends in .mar."""
    out = good_zip(tmp_path, fmt)
    renamed = out.rename(tmp_path / wrong)
    assert_problem(inspect([str(renamed), "--verify"], tmp_path), "rename it to end in")


@pytest.mark.parametrize("change,text", [
    ({"serializedFile": ["w"]}, "manifest model.serializedFile must be a string, not a list"),
    ({"modelFile": {"a": 1}}, "manifest model.modelFile must be a string, not an object"),
    ({"modelVersion": 1.0}, "manifest model.modelVersion must be a string, not a number"),
    ({"handler": ["service"]}, "manifest model.handler must be a string, not a list"),
    ({"runtime": {"python": 1}}, "manifest runtime must be a string, not an object"),
])
def test_manifest_fields_of_the_wrong_type_are_one_line(tmp_path: Path, change: dict, text: str):
    doc = {"runtime": "python", "model": {"modelName": "x", "handler": "service", "modelVersion": "1.0"}}
    if "runtime" in change:
        doc.update(change)
    else:
        doc["model"].update(change)
    path = tmp_path / "m.mar"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps(doc))
        z.writestr("service.py", HANDLER)
    r = inspect([str(path), "--verify"], tmp_path)
    assert_problem(r, text)
    assert "Traceback" not in r.stderr.decode()


def test_tar_hard_link_is_called_so(tmp_path: Path):
    from craft import tgz, ustar
    path = tmp_path / "h.tar.gz"
    path.write_bytes(tgz(ustar("x/l", kind=tarfile.LNKTYPE)))
    assert_problem(inspect([str(path), "--verify"], tmp_path), "hard link entry x/l: archives must hold")


def test_empty_archive_path_is_an_error(tmp_path: Path):
    write_tree(tmp_path, {"MAR-INF/MANIFEST.json": MANIFEST, "service.py": HANDLER})
    r = inspect(["", "--verify"], tmp_path)
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode() == ("mar-inspect: error: the archive path is empty; name a .mar, .tar.gz "
                                 "or no-archive folder\n")


@pytest.mark.parametrize("fmt", ["default", "no-archive"])
def test_a_link_named_on_the_command_line_is_followed_to_a_file_or_a_folder(tmp_path: Path, fmt: str):
    out = good_zip(tmp_path, fmt) if fmt != "no-archive" else None
    if out is None:
        write_tree(tmp_path / "model", {"service.py": HANDLER})
        assert run_cli(["--model-name", "m", "--model-path", "model", "--handler", "service",
                        "--archive-format", fmt, "--export-path", "exp", "-q"], tmp_path) == 0
        out = tmp_path / "exp" / "m"
    link = tmp_path / ("link.mar" if fmt == "default" else "link")
    os.symlink(out, link)
    r = inspect([link.name, "--verify"], tmp_path)
    assert r.returncode == 0 and b"verify: OK" in r.stdout, r.stdout.decode() + r.stderr.decode()
