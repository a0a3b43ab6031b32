"""Same inputs and options give byte-identical output, whatever mtimes, clocks or listing order."""
from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from conftest import HANDLER, write_tree
from mar_tasks import ArchiveOptions, build_archive

FILES = {f"assets/f{i:02d}.txt": f"line {i}\n" * (i * 50) for i in range(30)}
FILES.update({"service.py": HANDLER, "weights.bin": bytes(range(256)) * 9000, "run.sh": "#!/bin/sh\n"})


def make(root: Path, order: list, seed: int) -> Path:
    """Create the files in a given order with random mtimes (so directory order differs too)."""
    rng = random.Random(seed)
    for rel in order:
        write_tree(root, {rel: FILES[rel]})
        t = rng.randint(10**9, 2 * 10**9)
        os.utime(root / rel, (t, t))
    os.chmod(root / "run.sh", 0o755)
    return root


def digest_of(path: Path) -> str:
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            st = p.stat()
            h.update(f"{p.relative_to(path)} {oct(st.st_mode)} {st.st_mtime_ns}".encode())
            if p.is_file():
                h.update(p.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive", "zip-store"])
def test_two_builds_are_byte_identical(tmp_path: Path, fmt: str):
    names = sorted(FILES)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    a = make(tmp_path / "a" / "model", names, 1)
    b = make(tmp_path / "b" / "model", shuffled, 2)
    outs = []
    for root in (a, b):
        o = ArchiveOptions(model_name="m", handler="service", model_path=root, archive_format=fmt,
                           export_path=root.parent / "out").resolved(root.parent)
        outs.append(build_archive(o).path)
    assert digest_of(outs[0]) == digest_of(outs[1])


def test_source_date_epoch_is_honoured(tmp_path: Path, monkeypatch):
    import json
    import zipfile
    root = make(tmp_path / "model", sorted(FILES), 3)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    o = ArchiveOptions(model_name="m", handler="service", model_path=root).resolved(tmp_path)
    with zipfile.ZipFile(build_archive(o).path) as z:
        assert z.getinfo("service.py").date_time == (2023, 11, 14, 22, 13, 20)
        assert z.getinfo("run.sh").external_attr >> 16 == 0o100755
        assert json.loads(z.read("MAR-INF/MANIFEST.json"))["createdOn"] == "14/11/2023 22:13:20"


@pytest.mark.parametrize("value", ["4354819200", "8589934592", "31556889864403200"])
def test_source_date_epoch_past_what_every_reader_takes_is_refused(tmp_path: Path, monkeypatch, value):
    """Zip dates end in 2107; commons-compress, GNU tar and tarfile fail on huge times."""
    from mar_tasks.errors import ArchiveError
    root = make(tmp_path / "model", sorted(FILES), 3)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    o = ArchiveOptions(model_name="m", handler="service", model_path=root,
                       archive_format="tgz").resolved(tmp_path)
    with pytest.raises(ArchiveError, match=f"SOURCE_DATE_EPOCH={value} is out of range; use a value "
                                           "between 315532800"):
        build_archive(o)


def test_source_date_epoch_at_the_last_zip_date_verifies(tmp_path: Path, monkeypatch):
    from mar_tasks.formats.archive_reader import verify_archive
    root = make(tmp_path / "model", sorted(FILES), 3)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "4354819199")
    for fmt in ("default", "tgz"):
        o = ArchiveOptions(model_name="m", handler="service", model_path=root, archive_format=fmt,
                           export_path=tmp_path / fmt).resolved(tmp_path)
        assert verify_archive(build_archive(o).path) == []
