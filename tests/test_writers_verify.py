"""Property: everything every writer produces verifies (issue 19, item 5).

A model of 1,048,577 zero bytes once got "deflate stream does not end where its stored
size says" from --verify on an unmodified archive: inflate output held back at the 1 MiB
step limit was never asked for. The sizes here sit at and around the 1 MiB chunk boundary
(and the 64-byte stored head of every deflate stream), with empty files, zeros,
incompressible and mixed data, in every format and compression mode; a seeded random part
adds sizes and contents on top of the fixed ones.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict

import pytest

from conftest import HANDLER, run_cli, write_tree
from mar_tasks.formats.archive_reader import verify_archive
from mar_tasks.formats.deflate import CHUNK, HEAD

SIZES = [0, 1, HEAD - 1, HEAD, HEAD + 1, 32767, 32768, 32769, CHUNK - 1, CHUNK, CHUNK + 1,
         2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK + 17]
FORMATS = [("default", "auto"), ("default", "deflate"), ("default", "store"), ("zip-store", "auto"),
           ("tgz", "auto"), ("no-archive", "auto")]


def content(kind: str, size: int, rnd: random.Random) -> bytes:
    if kind == "zeros":
        return bytes(size)
    if kind == "noise":
        return rnd.randbytes(size)
    if kind == "text":
        return (b"the quick brown fox %d\n" * (size // 20 + 1))[:size]
    head = rnd.randbytes(min(size, 70_000))   # incompressible first, then zeros
    return head + bytes(size - len(head))


def build_and_verify(root: Path, files: Dict[str, bytes], fmt: str, compression: str) -> None:
    model = write_tree(root / "model", {"service.py": HANDLER, **files})
    assert run_cli(["--model-name", "m", "--model-path", str(model), "--handler", "service",
                    "--archive-format", fmt, "--compression", compression, "--export-path",
                    str(root / "out"), "-q"], root) == 0
    out = next((root / "out").iterdir())
    assert verify_archive(out) == [], (fmt, compression, sorted((k, len(v)) for k, v in files.items()))


def test_the_reported_case_1_mib_plus_one_zero_byte(tmp_path: Path):
    for fmt, compression in FORMATS:
        build_and_verify(tmp_path / f"{fmt}-{compression}", {"z.bin": bytes(CHUNK + 1)}, fmt, compression)


@pytest.mark.parametrize("kind", ["zeros", "noise", "text", "mixed"])
@pytest.mark.parametrize("fmt,compression", FORMATS)
def test_every_size_around_the_chunk_boundary_verifies(tmp_path: Path, kind: str, fmt: str, compression: str):
    rnd = random.Random(f"{kind}{fmt}")
    files = {f"{kind}/{size}.bin": content(kind, size, rnd) for size in SIZES}
    build_and_verify(tmp_path, files, fmt, compression)


@pytest.mark.parametrize("seed", range(6))
def test_random_models_verify_in_every_format(tmp_path: Path, seed: int):
    rnd = random.Random(seed)
    files = {}
    for n in range(rnd.randint(1, 6)):
        size = max(0, rnd.choice(SIZES) + rnd.randint(-3, 3))
        files[f"d{n % 3}/f{n}.bin"] = content(rnd.choice(["zeros", "noise", "text", "mixed"]), size, rnd)
    for fmt, compression in FORMATS:
        build_and_verify(tmp_path / f"{fmt}-{compression}", files, fmt, compression)


@pytest.mark.parametrize("a,b", [("Weights.bin", "weights.bin"), ("caf\u00e9.txt", "cafe\u0301.txt")])
def test_names_that_collide_on_other_systems_are_refused_by_the_writer_too(tmp_path: Path, a: str, b: str):
    """The verifier refuses names differing only by case or Unicode normalisation (they replace
    each other on macOS and Windows); the writer refuses them first, so our output verifies."""
    from conftest import run_cli_process
    write_tree(tmp_path / "model", {"service.py": HANDLER, a: b"1", b: b"2"})
    r = run_cli_process(["--model-name", "m", "--model-path", "model", "--handler", "service"], tmp_path)
    assert r.returncode == 1 and "differ only by case or Unicode normalisation" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "m.mar").exists()


def test_the_writer_refuses_what_verify_would_refuse_as_too_large():
    """Past --verify's limits the writer refuses first (so our output always verifies)."""
    from mar_tasks import ArchiveError
    from mar_tasks.plan.archive_limits import MAX_ENTRIES, check_archive_size
    check_archive_size(f"d{i // 1000}/f{i}" for i in range(MAX_ENTRIES - 1000))
    with pytest.raises(ArchiveError, match="at most 200,000 entries"):
        check_archive_size(f"d{i // 1000}/f{i}" for i in range(MAX_ENTRIES))
    with pytest.raises(ArchiveError, match="names take"):
        check_archive_size(f"d/{i:06d}" + "n" * 1000 for i in range(70_000))
