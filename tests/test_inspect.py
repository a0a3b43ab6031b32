"""mar-inspect: listing, --json, and --verify on good, tampered and unsafe archives."""
from __future__ import annotations

import json
import struct
import stat
import zipfile
from pathlib import Path

import pytest

from conftest import HANDLER, run_cli, run_cli_process

ARGS = ["--model-name", "m", "--model-path", "model", "--handler", "service"]


def inspect(args, cwd):
    return run_cli_process(args, cwd, module="mar_tasks.cli.inspect")


@pytest.mark.parametrize("fmt,out", [("default", "m.mar"), ("tgz", "m.tar.gz"), ("no-archive", "m")])
def test_verify_accepts_our_archives(model: Path, tmp_path: Path, fmt: str, out: str):
    assert run_cli(ARGS + ["--archive-format", fmt], tmp_path) == 0
    r = inspect([out, "--verify", "--json"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["problems"] == [] and doc["manifest"]["model"]["modelName"] == "m"
    assert {f["name"].split("/", 1)[-1] if fmt == "tgz" else f["name"] for f in doc["files"]} >= {
        "MAR-INF/MANIFEST.json", "service.py", "assets/synset.txt"}


def test_plain_listing(model: Path, tmp_path: Path):
    assert run_cli(ARGS, tmp_path) == 0
    r = inspect(["m.mar"], tmp_path)
    assert r.returncode == 0 and "model-0000.params" in r.stdout and '"modelName": "m"' in r.stdout


@pytest.mark.parametrize("where", [0.01, 0.2, 0.5, 0.9])
def test_verify_detects_flipped_byte(model: Path, tmp_path: Path, where: float):
    assert run_cli(ARGS, tmp_path) == 0
    data = bytearray((tmp_path / "m.mar").read_bytes())
    with zipfile.ZipFile(tmp_path / "m.mar") as z:
        info = z.getinfo("model-0000.params")
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # local header's
    at = info.header_offset + 30 + name_len + extra_len + int(where * info.compress_size)
    data[at] ^= 0xFF  # inside the compressed data
    (tmp_path / "bad.mar").write_bytes(bytes(data))
    r = inspect(["bad.mar", "--verify"], tmp_path)
    assert r.returncode == 1 and "PROBLEM: corrupt data" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_verify_detects_modified_central_directory(model: Path, tmp_path: Path):
    assert run_cli(ARGS, tmp_path) == 0
    with zipfile.ZipFile(tmp_path / "m.mar", "a") as z:  # keeps our comment, adds a member
        z.writestr("added.txt", "x")
    r = inspect(["m.mar", "--verify"], tmp_path)
    assert r.returncode == 1 and "modified after it was written" in r.stdout


def _hostile(tmp_path: Path, name: str, entries) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps(
            {"runtime": "python", "model": {"modelName": "x", "handler": "service", "modelVersion": "1"}}))
        z.writestr("service.py", HANDLER)
        for e in entries:
            z.writestr(*e) if isinstance(e, tuple) else z.writestr(e, "x")
    return path


@pytest.mark.parametrize("entries,problem", [
    (["../evil.py"], "'..' in path"),
    (["/etc/evil"], "absolute path"),
    (["service.py"], "duplicate entry name"),
])
def test_verify_rejects_unsafe_entries(tmp_path: Path, entries, problem):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate
        _hostile(tmp_path, "h.mar", entries)
    r = inspect(["h.mar", "--verify"], tmp_path)
    assert r.returncode == 1 and problem in r.stdout
    assert not (tmp_path.parent / "evil.py").exists()


def test_verify_rejects_symlink_entries_and_missing_handler(tmp_path: Path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    _hostile(tmp_path, "l.mar", [(info, "/etc/passwd")])
    r = inspect(["l.mar", "--verify"], tmp_path)
    assert r.returncode == 1 and "symlink entry" in r.stdout
    with zipfile.ZipFile(tmp_path / "n.mar", "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps(
            {"runtime": "python", "model": {"modelName": "x", "handler": "gone:handle", "modelVersion": "1"}}))
    r = inspect(["n.mar", "--verify"], tmp_path)
    assert r.returncode == 1 and "handler module 'gone' is not in the archive" in r.stdout


def test_inspect_of_junk_is_one_line(tmp_path: Path):
    (tmp_path / "junk.mar").write_text("not an archive")
    r = inspect(["junk.mar"], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
