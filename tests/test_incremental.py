"""doit reruns carry unchanged entries over from the output they replace, and still give
exactly the bytes of a build from the inputs alone.

Which entries a rebuild carried over is read from what the task saved in doit's state
(``values["carried"]``); every rebuild is also compared with a build from the inputs alone.
A "quiet edit" (new bytes of the same size, the mtime put back: unchanged by doit's own
rule) moves the input's ctime, so it is never carried over.

The models are made more than 2 s before their first build: an input changed less than
that before a build was read is not vouched for by its (inode, ctime) until it is hashed
again (the "racily clean" margin), so it would not be carried over by the first rebuild.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import HANDLER, write_tree
from doit_helpers import DODO, doit, doit_spawned
from mar_tasks import ArchiveOptions, build_archive

FORMATS = ["default", "zip-store", "no-archive"]
OUT = {"default": "out/m.mar", "zip-store": "out/m.mar", "no-archive": "out/m", "tgz": "out/m.tar.gz"}


def big(seed: int, size: int = 1_500_000) -> bytes:
    """Compressible (4-bit values), larger than one chunk: an aligned, deflated entry."""
    rng = random.Random(seed)
    return bytes(rng.getrandbits(4) for _ in range(size))


def make(root: Path, fmt: str, extra: str = "") -> Path:
    write_tree(root / "model", {
        "service.py": HANDLER, "big.bin": big(1), "rnd.bin": random.Random(2).randbytes(1_200_000),
        "vocab.txt": "".join(f"tok{i}\n" for i in range(20_000)), "assets/a.txt": "a\n",
    })
    (root / "dodo.py").write_text(DODO)
    write_config(root, fmt, extra)
    time.sleep(2.1)  # past the racily-clean margin (module docstring)
    return root


def write_config(root: Path, fmt: str, extra: str = "") -> None:
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""
        [tool.mar_tasks.models.m]
        model-path = "model"
        handler = "service:handle"
        export-path = "out"
        archive-format = "{fmt}"
        """) + extra)


def build(root: Path, *args: str, before: Tuple[str, ...] = ()) -> None:
    r = doit(root, *before, "archive", *args)
    assert r.rc == 0, r.out


def quiet_edit(path: Path, seed: int) -> bytes:
    """New bytes of the same size, mtime put back: unchanged by doit's rule."""
    st = path.stat()
    data = random.Random(seed).randbytes(st.st_size)
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return data


def saved_values(root: Path) -> dict:
    from doit.dependency import DbmDB, Dependency
    dep = Dependency(DbmDB, str(root / ".doit.db"))
    try:
        return dep._get("archive:m", "_values_:")
    finally:
        dep.close()


def record_file(root: Path, fmt: str = "default") -> Path:
    """The build record of archive:m's output (as the task, run in `root`, names it)."""
    from mar_tasks.tasks.build_records import record_path
    here = os.getcwd()
    os.chdir(root)
    try:
        return root / record_path(str(root / OUT[fmt]))
    finally:
        os.chdir(here)


def carried(root: Path, fmt: str = "default") -> List[str]:
    """The entries the last build of archive:m carried over, as its record says (the
    record must be the one the build's saved values name)."""
    record = json.loads(record_file(root, fmt).read_text())
    assert record["token"] == saved_values(root)["build"]
    return sorted(record["carried"])


UNEDITED = ["assets/a.txt", "big.bin", "rnd.bin", "vocab.txt"]


def same_as_full_build(root: Path, fmt: str) -> bool:
    ref = build_archive(ArchiveOptions(model_name="m", handler="service:handle",
                                       model_path=root / "model", export_path=root / "ref",
                                       archive_format=fmt, force=True).resolved(root))
    return snapshot(root / OUT[fmt]) == snapshot(ref.path)


def member(root: Path, fmt: str, name: str) -> bytes:
    out = root / OUT[fmt]
    if fmt == "no-archive":
        return (out / name).read_bytes()
    with zipfile.ZipFile(out) as z:
        return z.read(name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unchanged_entries_are_carried_over_and_force_rebuilds(tmp_path: Path, fmt: str):
    root = make(tmp_path, fmt)
    build(root)
    (root / "model/service.py").write_text(HANDLER + "# edited\n")
    build(root)
    assert carried(root, fmt) == UNEDITED                     # carried over, not read again
    assert member(root, fmt, "service.py").endswith(b"# edited\n")
    assert same_as_full_build(root, fmt)
    build(root, "--force")
    assert carried(root, fmt) == []                           # --force: from the inputs alone
    assert same_as_full_build(root, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_edit_whose_mtime_was_put_back_is_never_carried_over(tmp_path: Path, fmt: str):
    """doit's rule alone would call it unchanged; its (inode, ctime) moved, so it is read."""
    root = make(tmp_path, fmt)
    build(root)
    new = quiet_edit(root / "model/big.bin", 9)
    (root / "model/service.py").write_text(HANDLER + "# edited\n")
    build(root)
    assert "big.bin" not in carried(root, fmt) and "rnd.bin" in carried(root, fmt)
    assert member(root, fmt, "big.bin") == new
    assert same_as_full_build(root, fmt)


@pytest.mark.parametrize("change", ["add a file", "remove a file", "rename a file"])
def test_carried_over_when_the_file_set_changes(tmp_path: Path, change: str):
    """The first run after a build vouches for the inputs that build archived, whatever
    was added or removed since."""
    root = make(tmp_path, "default")
    build(root)
    if change == "add a file":
        (root / "model/assets/new.txt").write_text("new\n")
    elif change == "remove a file":
        (root / "model/assets/a.txt").unlink()
    else:
        (root / "model/vocab.txt").rename(root / "model/words.txt")
    build(root)
    assert {"big.bin", "rnd.bin"} <= set(carried(root))
    assert same_as_full_build(root, "default")


@pytest.mark.parametrize("start", ["fork", "spawn", "thread"])
def test_a_process_worker_gets_the_grant(tmp_path: Path, start: str):
    root = make(tmp_path, "default")
    build(root)
    (root / "model/service.py").write_text(HANDLER + "# edited\n")
    if start != "spawn":
        build(root, before=("-n", "2", "-P", "process" if start == "fork" else "thread"))
    else:  # the worker imports the dodo again and gets the task by pickle
        r = doit_spawned(root, "-n", "2", "-P", "process", "archive")
        assert r.returncode == 0, r.stdout + r.stderr
    assert carried(root) == UNEDITED
    assert member(root, "default", "service.py").endswith(b"# edited\n")
    assert same_as_full_build(root, "default")


def _edit_saved_deflate(root: Path) -> None:
    path = record_file(root)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "deflate": "isal 0.0 (another)"}))


def _edit_output(root: Path) -> None:
    """One byte of an entry's data changed, size and mtime kept: no longer the archive we
    wrote (its stamp and CRC say so), so it is neither adopted nor carried from."""
    out = root / OUT["default"]
    st = out.stat()
    with open(out, "r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("why", ["output edited", "other options", "other deflate", "force",
                                 "record missing", "record of another build", "record cut short",
                                 "record empty", "record nested without end", "record of other types"])
def test_never_carried_over_when_it_cannot_be_vouched_for(tmp_path: Path, why: str):
    root = make(tmp_path, "default")
    build(root)
    (root / "model/service.py").write_text(HANDLER + "# edited\n")
    args: Tuple[str, ...] = ()
    record = record_file(root)
    if why == "output edited":
        _edit_output(root)
    elif why == "record missing":
        record.unlink()
    elif why == "record of another build":
        record.write_text(json.dumps({**json.loads(record.read_text()), "token": "0" * 16}))
    elif why == "record cut short":
        record.write_bytes(record.read_bytes()[:40])
    elif why == "record empty":  # a write a power loss cut short
        record.write_bytes(b"")
    elif why == "record nested without end":
        record.write_text('{"format": "mar_tasks build record 1", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    elif why == "record of other types":  # its token kept: still not trusted
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "entries": [[["a"], {"b": 1}]] + data["entries"]}))
    elif why == "other options":
        write_config(root, "default", 'version = "2.0"\n')
    elif why == "other deflate":
        _edit_saved_deflate(root)
    else:
        args = ("--force",)
    r = doit(root, "archive", *args)
    assert r.rc == 0, r.out
    assert carried(root) == []  # (and each damaged record was replaced: it is ours)
    if why != "other options":
        assert same_as_full_build(root, "default")


def _as_a_release_before(root: Path, kind: bytes) -> None:
    """Make the output, doit's saved values and the build record what a build by a release
    before would have left: a stamp of `kind` (``content-sha256``, ``content-sha256-tree``)
    and per-entry digests of that kind, the record still naming this build."""
    from doit.dependency import DbmDB, Dependency
    from craft import restamp, stored_entries
    from mar_tasks.formats.ownership_stamp import entry_digest
    from mar_tasks.tasks.fingerprints import output_fingerprint
    out = root / OUT["default"]
    data = restamp(out.read_bytes(), kind)
    out.write_bytes(data)
    with zipfile.ZipFile(out) as z:
        stamp = z.comment
    assert stamp.startswith(b"mar_tasks " + kind)
    dep = Dependency(DbmDB, str(root / ".doit.db"))
    try:
        values = dep._get("archive:m", "_values_:")
        dep._set("archive:m", "_values_:", {
            **values, "output": output_fingerprint(str(out)), "stamp": stamp.decode()})
    finally:
        dep.close()
    path = record_file(root)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({
        **record, "digests": {n: entry_digest(d, kind).hex() for n, d in stored_entries(data)}}))


@pytest.mark.parametrize("kind", [b"content-sha256 ", b"content-sha256-tree "])
def test_an_archive_of_a_release_before_is_built_again_in_full(tmp_path: Path, kind: bytes):
    """Its saved digests are of another kind: carrying entries over would mix two kinds in
    one archive. The rebuild reads everything; the one after it carries over again."""
    root = make(tmp_path, "default")
    build(root)
    _as_a_release_before(root, kind)
    r = doit(root, "archive")
    assert r.rc == 0 and "-- archive:m" in r.out, r.out     # still up to date: it is ours
    (root / "model/service.py").write_text(HANDLER + "# edited\n")
    build(root)
    assert carried(root) == []
    assert same_as_full_build(root, "default")
    with zipfile.ZipFile(root / OUT["default"]) as z:
        assert z.comment.startswith(b"mar_tasks content-blake3-tree ")
    (root / "model/service.py").write_text(HANDLER + "# edited twice\n")
    build(root)
    assert carried(root) == UNEDITED
    assert same_as_full_build(root, "default")


def test_the_command_line_never_carries_over(tmp_path: Path):
    root = make(tmp_path, "default")
    cmd = [sys.executable, "-m", "mar_tasks", "--model-name", "m", "--model-path", "model",
           "--handler", "service:handle", "--export-path", "out", "-q", "-f"]
    subprocess.run(cmd, cwd=root, check=True)
    new = quiet_edit(root / "model/big.bin", 9)
    subprocess.run(cmd, cwd=root, check=True)
    assert member(root, "default", "big.bin") == new


# -- byte-identical to a full build, whatever the sequence of changes -------------------------

def snapshot(out: Path) -> object:
    """An archive's bytes; a folder's every file with its bytes, mode and mtime."""
    if out.is_file():
        return out.read_bytes()
    tree: Dict[str, tuple] = {}
    for dirpath, _, files in os.walk(out):
        for name in files:
            p = Path(dirpath) / name
            st = p.stat()
            tree[str(p.relative_to(out))] = (p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return tree


def full_build(root: Path, fmt: str, compression: str, version: str, where: Path) -> object:
    if where.exists():
        shutil.rmtree(where)
    opts = ArchiveOptions(model_name="m", handler="service:handle", model_path=Path("model"),
                          export_path=where, archive_format=fmt, compression=compression,
                          version=version or None).resolved(root)
    return snapshot(build_archive(opts).path)


def random_change(rng: random.Random, model: Path, step: int) -> str:
    files: List[Path] = sorted(p for p in model.rglob("*") if p.is_file() and p.name != "service.py")
    what = rng.choice(["edit small", "edit big", "add", "add big", "remove", "rename", "touch",
                       "chmod", "grow", "nothing"])
    if what in ("remove", "rename", "chmod", "touch") and not files:
        what = "add"
    if what == "edit small":
        (model / "service.py").write_text(HANDLER + f"# {step}\n")
    elif what == "edit big":
        target = max(files, key=lambda p: p.stat().st_size) if files else model / "big.bin"
        data = bytearray(target.read_bytes() if target.exists() else big(step)) or bytearray(b"x")
        at = rng.randrange(len(data))
        data[at] = (data[at] + 1) % 256
        target.write_bytes(bytes(data))
    elif what in ("add", "add big"):
        size = 1_100_000 + rng.randrange(300_000) if what == "add big" else rng.randrange(5000)
        sub = rng.choice(["", "assets/", "deep/er/"])
        p = model / f"{sub}new{step}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(big(step, size))
    elif what == "remove":
        rng.choice(files).unlink()
    elif what == "rename":
        src = rng.choice(files)
        src.rename(src.with_name(f"renamed{step}{src.suffix}"))
    elif what == "touch":
        os.utime(rng.choice(files))
    elif what == "chmod":  # (a mode change alone is no change to doit: another file changes)
        p = rng.choice(files)
        p.chmod(p.stat().st_mode ^ 0o100)
        (model / "service.py").write_text(HANDLER + f"# chmod {step}\n")
    elif what == "grow":
        with open(rng.choice(files), "ab") as f:
            f.write(b"more")
    return what


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("fmt", FORMATS)
def test_rebuilds_equal_full_builds_through_random_changes(tmp_path: Path, fmt: str, seed: int):
    """A seeded random driver (the failure message names the sequence of changes)."""
    rng = random.Random(f"incremental-{fmt}-{seed}")
    root = make(tmp_path / "p", fmt)
    compression, version = "auto", ""
    build(root)
    history: List[str] = []
    for step in range(14):
        what = random_change(rng, root / "model", step)
        if rng.random() < 0.15:
            compression = rng.choice(["auto", "deflate", "store"])
            version = rng.choice(["", "1.0", "2.0"])
            what += f" + options {compression} {version or '-'}"
        extra = f'compression = "{compression}"\n' + (f'version = "{version}"\n' if version else "")
        write_config(root, fmt, extra)
        history.append(what)
        build(root)
        expected = full_build(root, fmt, compression, version, tmp_path / "full")
        assert snapshot(root / OUT[fmt]) == expected, f"after {history}"


def _restore_like_rsync(snapshot: Path, root: Path) -> None:
    """``rsync -a --delete snapshot/ root/``: a file is copied only where size or mtime
    differ (rsync's quick check), so an output file of the same size and (fixed) mtime is
    left as it is."""
    for src in sorted(snapshot.rglob("*")):
        dst = root / src.relative_to(snapshot)
        if src.is_dir():
            dst.mkdir(exist_ok=True)
            continue
        s = src.stat()
        if dst.exists() and dst.stat().st_size == s.st_size and dst.stat().st_mtime_ns == s.st_mtime_ns:
            continue
        shutil.copy2(src, dst)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_output_a_restore_left_stale_is_rebuilt_not_trusted(tmp_path: Path, fmt: str):
    """A project restored from a snapshot (state, record and inputs go back) whose output a
    restore left as the newer build wrote it: in a no-archive folder every file has the
    same fixed mtime, so a same-size change survives rsync's quick check. The output is no
    longer the one the restored state describes, so it is rebuilt, and nothing is carried
    over from it then or later."""
    root = make(tmp_path / "p", fmt)
    build(root)
    build(root)  # a no-op: the inputs are verified, so a restored folder may be adopted
    snapshot = tmp_path / "snapshot"
    shutil.copytree(root, snapshot, copy_function=shutil.copy2)
    with open(root / "model/rnd.bin", "r+b") as f:  # same size: the output's file too
        f.seek(5)
        f.write(b"Q")
    build(root)
    _restore_like_rsync(snapshot, root)
    build(root)
    assert same_as_full_build(root, fmt)
    time.sleep(2.1)
    (root / "model/service.py").write_text(HANDLER + "# edited\n")
    build(root)
    assert same_as_full_build(root, fmt)
