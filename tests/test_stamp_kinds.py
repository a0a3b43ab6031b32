"""The stamp's kinds of zip entry digest (issue 17): ``content-blake3-tree``, written now,
whose 1 MiB pieces are hashed on every core; ``content-sha256-tree`` (the same tree with
SHA-256) and ``content-sha256``, written by releases before, still verified and never
carried over from.

The definitions are written out here a second time, from the stored bytes alone (zipfile
finds them), so a change to the one in ``formats/ownership_stamp.py`` that the writer and
verifier would share is caught: the tree's cut must depend on nothing but the stored bytes'
offsets, not on how deflate chunked its output nor on the thread count.
"""
from __future__ import annotations

import hashlib
import io
import random
import struct
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

import pytest
from blake3 import blake3

from conftest import HANDLER, write_tree
from craft import forge_crc, restamp, stored_entries
from mar_tasks import ArchiveOptions, build_archive
from mar_tasks.errors import ArchiveError
from mar_tasks.formats import ownership_stamp as stamp
from mar_tasks.formats.archive_reader import Archive, verify
from mar_tasks.formats.carry_over import open_old_zip

MiB = 1 << 20
B3 = b"mar_tasks content-blake3-tree "
TREE = b"mar_tasks content-sha256-tree "
PLAIN = b"mar_tasks content-sha256 "


# -- the definitions, written out independently --------------------------------------------------

def ref_b3(data: bytes) -> bytes:
    pieces = b"".join(blake3(data[i:i + MiB]).digest() for i in range(0, len(data), MiB))
    return blake3(b"mar_tasks blake3 tree of 1048576-byte pieces\n" + pieces).digest()


def ref_tree(data: bytes) -> bytes:
    pieces = b"".join(hashlib.sha256(data[i:i + MiB]).digest() for i in range(0, len(data), MiB))
    return hashlib.sha256(b"mar_tasks sha256 tree of 1048576-byte pieces\n" + pieces).digest()


def ref_plain(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def central_directory(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        start = z.start_dir
    end = data.rfind(b"PK\x05\x06")
    z64 = data.rfind(b"PK\x06\x06", 0, end)
    return data[start:z64 if z64 >= start else end]


REFS = {B3: ref_b3, TREE: ref_tree, PLAIN: ref_plain}   # each stamp prefix: its entry digest


def headers_and_end(data: bytes) -> bytes:
    """Every local header as it stands, in order, then the end records up to the comment's
    length field: what the newest kind covers beside the data and the central directory."""
    out = b""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            at = info.header_offset
            n, m = struct.unpack("<HH", data[at + 26:at + 30])
            out += data[at:at + 30 + n + m]
        cd_end = z.start_dir + len(central_directory(data))
    return out + data[cd_end:data.rfind(b"PK\x05\x06") + 20]


def ref_stamp(data: bytes, prefix: bytes) -> bytes:
    content = hashlib.sha256(b"".join(REFS[prefix](d) for _, d in stored_entries(data))).digest()
    covered = content + hashlib.sha256(central_directory(data)).digest()
    if prefix == B3:
        covered += hashlib.sha256(headers_and_end(data)).digest()
    return prefix + hashlib.sha256(covered).hexdigest().encode()


def problems_of(path: Path) -> List[str]:
    """verify's problems, or the one line of an archive that is no archive at all."""
    try:
        return verify(Archive(path))
    except ArchiveError as exc:   # (a signature flipped: not a zip or gzip at all)
        return [str(exc)]


def comment(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.comment


# -- models --------------------------------------------------------------------------------------

def compressible(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(3) for _ in range(size))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """Entries of 0 bytes, under a piece, exactly a piece, many pieces with a short last one
    (deflated: deflate's 1 MiB input chunks give pieces of other sizes than 1 MiB), and
    random bytes (stored by "auto", as zip-store stores everything)."""
    return write_tree(tmp_path_factory.mktemp("stamp") / "model", {
        "service.py": HANDLER, "empty.txt": b"", "one.bin": compressible(MiB, 1),
        "big.bin": compressible(5 * MiB + 12_345, 2), "rnd.bin": random.Random(3).randbytes(3 * MiB + 7),
        "small.json": '{"a": 1}',
    })


def build(model: Path, out: Path, fmt: str, threads: int) -> bytes:
    opts = ArchiveOptions(model_name="m", handler="service:handle", model_path=model,
                          export_path=out, archive_format=fmt, force=True).resolved(out.parent)
    return build_archive(opts, threads=threads).path.read_bytes()


# -- the tree digest -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind,ref", [(stamp.B3_KIND, ref_b3), (stamp.TREE_KIND, ref_tree)])
@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 17])
def test_an_entry_digest_depends_only_on_its_bytes_not_on_the_cuts_or_threads(size: int, kind: bytes, ref):
    data = random.Random(size).randbytes(size)
    want = ref(data)
    assert stamp.entry_digest(data, kind) == want
    assert stamp.entry_digest(data) == ref_b3(data)   # what zips are written with
    rng = random.Random(7)
    with ThreadPoolExecutor(3) as pool:
        for submit, in_flight in [(None, 1), (pool.submit, 1), (pool.submit, 2), (pool.submit, 7)]:
            for _ in range(4):
                h = stamp.EntryHasher(kind, submit, in_flight)
                at = 0
                while at < len(data):   # cuts of every size: bytes, odd sizes, past a piece
                    n = rng.choice([1, 3, 4096, MiB - 5, MiB, 2 * MiB + 1, rng.randrange(1, MiB)])
                    h.update(bytearray(data[at:at + n]) if n % 2 else data[at:at + n])
                    at += n
                assert h.digest() == want
    assert stamp.entry_digest(data, stamp.PLAIN_KIND) == ref_plain(data)


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_archives_are_the_same_bytes_whatever_the_thread_count(tmp_path: Path, model: Path, fmt: str):
    """And each entry's digest (the writer hashes deflate's output as it comes, in pieces of
    other sizes) is the one computed from the stored bytes alone."""
    builds = {n: build(model, tmp_path / f"t{n}", fmt, n) for n in (1, 2, 3, 5)}
    assert len(set(builds.values())) == 1
    data = builds[1]
    assert comment(data) == ref_stamp(data, B3)
    methods = {i.filename: i.compress_type for i in zipfile.ZipFile(io.BytesIO(data)).infolist()}
    assert methods["big.bin"] == (zipfile.ZIP_DEFLATED if fmt == "default" else zipfile.ZIP_STORED)
    assert methods["rnd.bin"] == zipfile.ZIP_STORED
    assert verify(Archive(tmp_path / "t1" / "m.mar")) == []


def test_the_digests_saved_for_a_rebuild_are_the_entries_blake3_tree_digests(tmp_path: Path, model: Path):
    opts = ArchiveOptions(model_name="m", handler="service:handle", model_path=model,
                          export_path=tmp_path / "out").resolved(tmp_path)
    result = build_archive(opts, threads=2)
    saved: Dict[str, str] = dict(result.digests)
    stored = dict(stored_entries(result.path.read_bytes()))
    assert saved == {name: ref_b3(d).hex() for name, d in stored.items()}


# -- the kinds, old and new ----------------------------------------------------------------------

def test_a_new_stamp_is_not_one_an_older_mar_tasks_would_check():
    """An older mar_tasks looks for b"content-sha256-tree " or b"content-sha256 " (with the
    space) after the prefix."""
    new = stamp.stamp_for("0" * 64)
    assert new.startswith(B3) and not new.startswith(TREE) and not new.startswith(PLAIN)
    assert stamp.stamp_kind(new) == stamp.B3_KIND
    assert stamp.stamp_kind(TREE + b"0" * 64) == stamp.TREE_KIND
    assert stamp.stamp_kind(PLAIN + b"0" * 64) == stamp.PLAIN_KIND


@pytest.mark.parametrize("kind,prefix", [(stamp.TREE_KIND, TREE), (stamp.PLAIN_KIND, PLAIN)])
@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_an_archive_stamped_by_a_release_before_still_verifies(tmp_path: Path, model: Path, fmt: str,
                                                               kind: bytes, prefix: bytes):
    new = build(model, tmp_path / "new", fmt, 2)
    old = restamp(new, kind)
    assert comment(old) == ref_stamp(old, prefix)   # that release's definition
    (tmp_path / "old.mar").write_bytes(old)
    assert verify(Archive(tmp_path / "old.mar")) == []
    # ...and a stamp of either kind over the other kind's digest is refused
    (tmp_path / "swapped.mar").write_bytes(old[:-64] + new[-64:])
    assert any("does not match its mar_tasks stamp" in p for p in verify(Archive(tmp_path / "swapped.mar")))


def test_stamps_of_kinds_we_do_not_write_there_are_named(tmp_path: Path, model: Path):
    data = build(model, tmp_path / "z", "default", 2)
    unknown = data[:-len(comment(data))] + b"mar_tasks content-sha3 " + b"0" * 64
    end = unknown.rfind(b"PK\x05\x06")
    unknown = unknown[:end + 20] + struct.pack("<H", len(unknown) - end - 22) + unknown[end + 22:]
    (tmp_path / "u.mar").write_bytes(unknown)
    assert any("does not know" in p for p in verify(Archive(tmp_path / "u.mar")))
    tgz = build(model, tmp_path / "t", "tgz", 2)
    assert tgz[10:10 + len(PLAIN)] == PLAIN                  # a tgz's stamp keeps its kind
    swapped = tgz[:10] + b"mar_tasks content-sha256-tree " + tgz[10 + len(PLAIN):10 + len(PLAIN) + 59] \
        + tgz[10 + len(PLAIN) + 64:]                         # same length: the header holds it
    (tmp_path / "t.tar.gz").write_bytes(swapped)
    assert any("never writes on this format" in p for p in verify(Archive(tmp_path / "t.tar.gz")))


@pytest.mark.parametrize("kind", [stamp.B3_KIND, stamp.TREE_KIND, stamp.PLAIN_KIND])
def test_a_byte_changed_in_any_piece_fails_verify_even_with_the_crc_kept(tmp_path: Path, model: Path,
                                                                         kind: bytes):
    """rnd.bin is stored (3 MiB + 7: four pieces, the last of 7 bytes); a changed byte with
    the 4 after it chosen so the CRC-32 is unchanged is caught by the stamp alone."""
    data = restamp(build(model, tmp_path / "z", "zip-store", 2), kind)
    (tmp_path / "ok.mar").write_bytes(data)
    assert verify(Archive(tmp_path / "ok.mar")) == []
    stored = dict(stored_entries(data))["rnd.bin"]
    start = data.index(stored)
    for piece in range(4):
        at = min(piece * MiB + 1000, len(stored) - 5)     # the last piece: its first byte
        edited = forge_crc(stored, at, bytes([stored[at] ^ 0x55]))
        assert edited != stored and zipfile.crc32(edited) == zipfile.crc32(stored)
        bad = data[:start] + edited + data[start + len(stored):]
        (tmp_path / "bad.mar").write_bytes(bad)
        problems = verify(Archive(tmp_path / "bad.mar"))
        assert problems == ["the archive does not match its mar_tasks stamp: it was modified after "
                            "it was written"], (piece, problems)


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_every_byte_of_a_new_archive_but_the_stamp_is_covered(tmp_path: Path, fmt: str):
    """A bit flipped anywhere in a local header (its time and date, which the central
    directory's check does not see, included) or in the end records before the stamp fails
    verify: a stamp of the newest kind vouches for every byte before it."""
    model = write_tree(tmp_path / "model", {"service.py": HANDLER, "w.bin": random.Random(5).randbytes(MiB + 9),
                                            "a.txt": "x" * 3000})
    data = build(model, tmp_path / "out", fmt, 2)
    assert verify(Archive(tmp_path / "out" / "m.mar")) == []
    spans = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            at = info.header_offset
            n, m = struct.unpack("<HH", data[at + 26:at + 30])
            assert m == 0 or info.file_size >= MiB        # the big entry carries alignment padding
            spans.append(range(at, at + 30 + n + m))
    eocd = data.rfind(b"PK\x05\x06")
    spans.append(range(eocd, eocd + 20))
    bad = tmp_path / "bad.mar"
    for span in spans:
        for at in span:
            for bit in (0x01, 0x80):
                flipped = bytearray(data)
                flipped[at] ^= bit
                bad.write_bytes(bytes(flipped))
                assert problems_of(bad) != [], (at, bit)


def test_a_stamped_tgz_whose_gzip_header_changed_fails(tmp_path: Path, model: Path):
    """The stamp covers what follows the gzip header; its time, flags, XFL and OS bytes must
    be the writer's own."""
    data = build(model, tmp_path / "t", "tgz", 2)
    assert verify(Archive(tmp_path / "t" / "m.tar.gz")) == []
    bad = tmp_path / "bad.tar.gz"
    for at in range(3, 10):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[at] ^= bit
            bad.write_bytes(bytes(flipped))
            assert problems_of(bad) != [], (at, bit)


@pytest.mark.parametrize("damage", ["no comment", "prefix flipped"])
def test_an_archive_whose_manifest_says_mar_tasks_but_has_no_stamp_fails(tmp_path: Path, model: Path,
                                                                          damage: str):
    """Else damage to the stamp's first bytes (or a tool dropping the comment) would pass
    the archive as a foreign one, its data unchecked."""
    data = build(model, tmp_path / "z", "default", 2)
    n = len(comment(data))
    eocd = data.rfind(b"PK\x05\x06")
    if damage == "no comment":
        data = data[:eocd + 20] + b"\0\0"
    else:
        data = data[:-n] + b"Mar_tasks " + data[-n + 10:]
    (tmp_path / "d.mar").write_bytes(data)
    problems = verify(Archive(tmp_path / "d.mar"))
    assert problems == ["the manifest says mar_tasks wrote this archive, but it carries no mar_tasks "
                        "stamp: another tool rewrote it or its comment was damaged; rebuild it"]
    foreign = tmp_path / "foreign.mar"   # torch-model-archiver's manifest: no such claim
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", '{"runtime": "python", "archiverVersion": "0.12.0", "model": '
                   '{"modelName": "m", "handler": "service.py", "modelVersion": "1.0"}}')
        z.writestr("service.py", HANDLER)
    assert verify(Archive(foreign)) == []


# -- carry-over ----------------------------------------------------------------------------------

def test_carry_over_takes_only_an_archive_of_the_kind_written_now(tmp_path: Path, model: Path):
    """The digests saved with an archive are of its kind: one of the release before never
    serves a rebuild (an archive never mixes kinds), even when its digests match its stamp."""
    data = build(model, tmp_path / "new", "default", 2)
    entries = stored_entries(data)
    (tmp_path / "tree.mar").write_bytes(data)
    old = open_old_zip(tmp_path / "tree.mar", {n: ref_b3(d).hex() for n, d in entries})
    assert old is not None
    old.f.close()
    for kind, ref in [(stamp.TREE_KIND, ref_tree), (stamp.PLAIN_KIND, ref_plain)]:
        (tmp_path / "old.mar").write_bytes(restamp(data, kind))
        for digests in (ref, ref_b3):
            assert open_old_zip(tmp_path / "old.mar", {n: digests(d).hex() for n, d in entries}) is None


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
@pytest.mark.parametrize("fail", [False, True])
def test_no_thread_outlives_a_build(tmp_path: Path, model: Path, fmt: str, fail: bool):
    """The pool that deflates and hashes is joined before the build returns or fails (we
    run inside users' doit processes)."""
    before = set(threading.enumerate())
    opts = ArchiveOptions(model_name="m", handler="service:handle", model_path=model,
                          export_path=tmp_path / "o", archive_format=fmt).resolved(tmp_path)

    def stop_midway(total: int):
        def tick(n: int) -> None:
            if fail:
                raise KeyboardInterrupt
        return tick

    try:
        build_archive(opts, threads=3, progress=stop_midway)
    except KeyboardInterrupt:
        assert fail
    assert [t.name for t in threading.enumerate() if t not in before] == []
