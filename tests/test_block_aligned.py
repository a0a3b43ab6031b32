"""Large entries' data start on a 4 KiB boundary (zipalign's 0xD935 padding in the local
header), and every reader we care about accepts that: Python's zipfile, ``unzip -t``,
Java's ZipInputStream (TorchServe's reader) and ``mar-inspect --verify``."""
from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import HANDLER, run_cli, write_tree
import test_servable
from test_servable import java_listing
from mar_tasks.formats.block_copy import copy_range

MIB = 1 << 20
java_reader = test_servable.java_reader  # its fixture: Java's ZipInputStream, compiled once


@pytest.fixture
def sized_model(tmp_path: Path) -> Path:
    rng = random.Random(4)
    return write_tree(tmp_path / "model", {
        "service.py": HANDLER,
        "exactly_1mib.bin": bytes(rng.getrandbits(4) for _ in range(MIB)),
        "just_under.bin": rng.randbytes(MIB - 1),
        "big_random.bin": rng.randbytes(3 * MIB + 5),
        # (not zeros: a 2 MiB run of zeros trips a verifier bug of main, reported to issue 19)
        "big_nibbles.bin": bytes(rng.getrandbits(4) for _ in range(2 * MIB + 77)),
        "a/b/long_name_" + "x" * 100 + ".bin": rng.randbytes(MIB + 1),
    })


def local_extras(path: Path):
    """(name, data offset, {extra tag: body}) of every local header."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            at = info.header_offset
            nlen, elen = struct.unpack_from("<HH", data, at + 26)
            extra, tags, i = data[at + 30 + nlen:at + 30 + nlen + elen], {}, 0
            while i + 4 <= len(extra):
                tag, size = struct.unpack_from("<HH", extra, i)
                tags[tag] = extra[i + 4:i + 4 + size]
                i += 4 + size
            assert i == len(extra)
            yield info, at + 30 + nlen + elen, tags


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_large_entries_start_on_a_block(sized_model: Path, tmp_path: Path, fmt: str):
    assert run_cli(["--model-name", "m", "--model-path", "model", "--handler", "service",
                    "--archive-format", fmt], tmp_path) == 0
    seen = 0
    for info, data_at, tags in local_extras(tmp_path / "m.mar"):
        if info.file_size >= MIB:
            assert data_at % 4096 == 0, info.filename
            assert struct.unpack_from("<H", tags[0xD935])[0] == 4096
            assert set(tags[0xD935][2:]) <= {0}
            seen += 1
        else:
            assert 0xD935 not in tags, info.filename  # small entries are not padded
    assert seen == 4


def test_aligned_archives_read_everywhere(java_reader, sized_model: Path, tmp_path: Path):
    assert run_cli(["--model-name", "m", "--model-path", "model", "--handler", "service"], tmp_path) == 0
    mar = tmp_path / "m.mar"
    with zipfile.ZipFile(mar) as z:
        assert z.testzip() is None
        expected = {i.filename: (i.file_size, i.CRC) for i in z.infolist()}
        assert z.read("big_nibbles.bin") == (sized_model / "big_nibbles.bin").read_bytes()
    assert java_listing(java_reader, mar) == expected
    if shutil.which("unzip"):
        r = subprocess.run(["unzip", "-t", str(mar)], capture_output=True, text=True)
        assert r.returncode == 0 and "No errors detected" in r.stdout, r.stdout
    r = subprocess.run([sys.executable, "-m", "mar_tasks.cli.inspect", str(mar), "--verify"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "verify: OK" in r.stdout, r.stdout + r.stderr


def test_copy_range_copies_at_offsets_and_stops_at_the_source_end(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    data = random.Random(1).randbytes(3 * MIB + 10)
    src.write_bytes(data)
    dst.write_bytes(b"head")
    for plain in (False, True):
        os.environ["MAR_TASKS_BLOCK_COPY"] = "plain" if plain else ""
        try:
            with open(src, "rb") as s, open(dst, "r+b") as d:
                assert copy_range(s.fileno(), 5, d.fileno(), 4, len(data) - 5) == len(data) - 5
                assert copy_range(s.fileno(), len(data) - 3, d.fileno(), len(data) - 1, 100) == 3
        finally:
            del os.environ["MAR_TASKS_BLOCK_COPY"]
        assert dst.read_bytes() == b"head" + data[5:] + data[-3:]
