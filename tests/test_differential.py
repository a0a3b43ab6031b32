"""Issue 19's rule, tested against the real readers: `--verify` says OK only if every reader
(Python's zipfile/tarfile, GNU tar, Info-ZIP unzip, TorchServe 0.12's own ZipUtils on the
JDK) extracts exactly the entries the verifier listed, byte for byte.

Every hostile case (tests/hostile_cases.py) must be refused; every good one (ours in every
format, torch-model-archiver-style zipfile/tarfile output, crafted canonical ones) must
verify, and then every reader must agree with the verifier's listing.
"""
from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

import readers
from conftest import HANDLER, run_cli, write_tree
from craft import forge_crc, restamp
from hostile_cases import GOOD, HOSTILE
from mar_tasks.formats.archive_reader import Archive, verify

OUR_FORMATS = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}


def our_archives(root: Path, files: Dict[str, bytes], tag: str = "m") -> Dict[str, Path]:
    """`files` (plus a handler) archived by mar-archive in every format."""
    model = write_tree(root / f"model-{tag}", {"service.py": HANDLER, **files})
    out = {}
    for fmt, suffix in OUR_FORMATS.items():
        name = f"{tag}_{fmt.replace('-', '_')}"
        assert run_cli(["--model-name", name, "--model-path", str(model), "--handler", "service",
                        "--archive-format", fmt, "--export-path", str(root / "out"), "-q"], root) == 0
        out[f"ours {fmt} {tag}"] = root / "out" / (name + suffix)
    return out


TMA_FORMATS = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}


def tma_archives(root: Path) -> Dict[str, Path]:
    """The same kind of model archived by torch-model-archiver 0.12 itself, when installed
    (.ci/run: pip install --no-deps torch-model-archiver==0.12.0): what it writes must verify."""
    if importlib.util.find_spec("model_archiver") is None:
        return {}
    model = write_tree(root / "tma-model", {"service.py": HANDLER, "w.bin": random.Random(3).randbytes(200_000),
                                            "sub/a.txt": b"a", "sub/z.bin": bytes((1 << 20) + 1)})
    out = {}
    for fmt, suffix in TMA_FORMATS.items():
        name = f"t_{fmt.replace('-', '_')}"
        subprocess.run([sys.executable, "-c", "from model_archiver.model_packaging import "
                        "generate_model_archive; generate_model_archive()", "--model-name", name,
                        "--version", "1.0", "--handler", str(model / "service.py"), "--extra-files",
                        f"{model / 'sub'},{model / 'w.bin'}", "--archive-format", fmt,
                        "--export-path", str(root)], check=True, capture_output=True, timeout=120)
        out[f"tma {fmt}"] = root / (name + suffix)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Dict[str, dict]:
    """Every case: its file, the verifier's verdict and listing, and each reader's tree."""
    root = tmp_path_factory.mktemp("corpus")
    cases: Dict[str, Path] = {}
    for n, (name, build) in enumerate({**HOSTILE, **GOOD}.items()):
        suffix, data = build()
        cases[name] = root / f"case{n}{suffix}"
        cases[name].write_bytes(data)
    rnd = random.Random(19)
    cases.update(our_archives(root, {
        "zeros.bin": bytes((1 << 20) + 1), "empty.txt": b"", "noise.bin": rnd.randbytes(300_000),
        "données/é.txt": "é".encode(), "assets/deep/a/b/c.txt": b"c", "MAR-INF-not/x": b"x"}))
    cases.update(tma_archives(root))
    results = {name: dict(path=p, verdict=readers.expected(p)) for name, p in cases.items()}
    ok = [r["path"] for r in results.values() if not r["verdict"][0] and r["path"].is_file()]
    java = readers.compile_java(tmp_path_factory.mktemp("java")) if shutil.which("java") else None
    seen = readers.extract_all(ok, tmp_path_factory.mktemp("extracted"), java)
    for r in results.values():
        r["readers"] = seen.get(r["path"], {})
    return results


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_archive_is_refused(corpus, name: str):
    problems, _ = corpus[name]["verdict"]
    assert problems, f"{name}: verify said OK"
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("name", sorted(GOOD) + [f"ours {f} m" for f in OUR_FORMATS]
                         + [f"tma {f}" for f in TMA_FORMATS])
def test_good_archive_verifies(corpus, name: str):
    if name not in corpus:
        pytest.skip("torch-model-archiver is not installed (see .ci/run)")
    problems, tree = corpus[name]["verdict"]
    assert problems == [], problems
    assert "MAR-INF/MANIFEST.json" in tree


@pytest.mark.parametrize("name", sorted(HOSTILE) + sorted(GOOD) + [f"ours {f} m" for f in OUR_FORMATS]
                         + [f"tma {f}" for f in TMA_FORMATS])
def test_every_reader_extracts_what_verify_listed(corpus, name: str):
    """The rule itself, for every case: verify OK => every reader agrees, byte for byte."""
    if name not in corpus:
        pytest.skip("torch-model-archiver is not installed (see .ci/run)")
    case = corpus[name]
    problems, tree = case["verdict"]
    if problems:
        return  # refused: nothing to compare (test_hostile_archive_is_refused says why it must be)
    if case["path"].is_dir():
        pytest.skip("a no-archive folder is not extracted: TorchServe loads it in place")
    assert set(case["readers"]) >= {"python"}
    assert readers.disagreements(tree, case["readers"]) == []


def test_every_reader_is_installed():
    """The harness above runs only the readers present; say loudly which are missing."""
    missing = readers.missing_readers()
    if missing:
        pytest.skip("readers missing (see .ci/run): " + ", ".join(missing))


def test_harness_sees_a_reader_disagreeing(tmp_path: Path):
    """The comparison can fail: a second manifest spelled ./MAR-INF/... replaces the first
    in the readers' trees, which then differ from a listing that holds the first."""
    from craft import EVIL_MANIFEST, ZEntry, build_zip, good_entries
    path = tmp_path / "h.mar"
    path.write_bytes(build_zip(good_entries(ZEntry(b"./MAR-INF/MANIFEST.json", EVIL_MANIFEST))))
    clean = tmp_path / "c.mar"
    clean.write_bytes(build_zip(good_entries()))
    _, tree = readers.expected(clean)
    seen = readers.extract_all([path], tmp_path / "x", None)[path]
    assert readers.disagreements(tree, seen)


def test_crc_kept_by_forging_is_caught_by_the_stamp_only(corpus, tmp_path: Path):
    """Change noise.bin's first bytes and forge the next 4 so its CRC-32 is unchanged: every
    CRC and size still matches; only the stamp (which covers every byte) notices."""
    src = bytearray(corpus["ours zip-store m"]["path"].read_bytes())
    start = src.index(b"noise.bin") + len(b"noise.bin")           # stored data follows the name
    import zipfile
    with zipfile.ZipFile(corpus["ours zip-store m"]["path"]) as z:
        info = z.getinfo("noise.bin")
    end = start + info.compress_size
    src[start:end] = forge_crc(bytes(src[start:end]), 10, b"EDITED")
    (tmp_path / "f.mar").write_bytes(bytes(src))
    problems = verify(Archive(tmp_path / "f.mar"))
    assert problems == ["the archive does not match its mar_tasks stamp: it was modified after "
                        "it was written"]
    (tmp_path / "r.mar").write_bytes(restamp(bytes(src)))   # unkeyed: anyone can re-stamp
    assert verify(Archive(tmp_path / "r.mar")) == []


def test_tgz_data_change_is_caught_by_the_stamp(corpus, tmp_path: Path):
    import gzip
    import zlib
    src = corpus["ours tgz m"]["path"].read_bytes()
    raw = bytearray(gzip.decompress(src))
    at = raw.index(b"\xc3\xa9", raw.index(b"donn"))   # é.txt's data comes after its header
    at = raw.index("é".encode(), at + 600)
    raw[at] ^= 1
    body = zlib.compressobj(6, zlib.DEFLATED, -15)
    from mar_tasks.formats.ownership_stamp import STAMP_LEN
    head = src[:10 + STAMP_LEN + 1]
    out = head + body.compress(bytes(raw)) + body.flush() + zlib.crc32(bytes(raw)).to_bytes(4, "little") \
        + (len(raw) & 0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "t.tar.gz").write_bytes(out)
    assert verify(Archive(tmp_path / "t.tar.gz")) == [
        "the archive does not match its mar_tasks stamp: it was modified after it was written"]
    (tmp_path / "r.tar.gz").write_bytes(restamp(out))
    assert verify(Archive(tmp_path / "r.tar.gz")) == []


def test_no_archive_folder_verifies_and_is_read_by_descriptor(corpus):
    problems, tree = corpus["ours no-archive m"]["verdict"]
    assert problems == [] and tree["zeros.bin"] and os.path.isdir(corpus["ours no-archive m"]["path"])
