"""Blocks really shared on XFS with reflink (a loop-mounted image), and the same bytes
where they cannot be (ext4, across file systems, the kernel copy turned off).

Sharing is read from the file system itself: FIEMAP's shared flag on the output's extents,
not bytes compared. Skipped, with the reason, where the image cannot be mounted (not root,
no mkfs.xfs); ``.ci/run`` installs xfsprogs and runs these as root.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import HANDLER, write_tree
from doit_helpers import DODO, doit
from mar_tasks import ArchiveOptions, build_archive

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from fs_images import Unavailable, mount_xfs, shared_bytes, tree_shared_bytes  # noqa: E402

BLOCK = 4096


@pytest.fixture(scope="module")
def xfs(tmp_path_factory) -> Iterator[Path]:
    try:
        with mount_xfs(tmp_path_factory.mktemp("xfs")) as mnt:
            yield mnt
    except Unavailable as why:
        pytest.skip(f"no XFS image: {why}")


def model(root: Path) -> Path:
    rng = random.Random(3)
    return write_tree(root, {
        "service.py": HANDLER,
        "weights.bin": bytes(rng.getrandbits(4) for _ in range(3_000_000)),   # deflates
        "random.bin": rng.randbytes(2_500_000),                                # stored by auto
        "vocab.txt": "".join(f"tok{i}\n" for i in range(1000)),
    })


def build(src: Path, out: Path, fmt: str) -> Path:
    opts = ArchiveOptions(model_name="m", handler="service:handle", model_path=src, export_path=out,
                          archive_format=fmt, force=True)
    return build_archive(opts.resolved(out.parent)).path


def aligned_size(*sizes: int) -> int:
    """What block sharing can cover of data of these sizes: whole blocks."""
    return sum(s // BLOCK * BLOCK for s in sizes)


@pytest.mark.parametrize("fmt", ["zip-store", "no-archive"])
def test_outputs_share_their_inputs_blocks(xfs: Path, tmp_path: Path, fmt: str):
    here = xfs / f"share-{fmt}"
    src = model(here / "model")
    out = build(src, here / "out", fmt)
    shared, total = tree_shared_bytes(out)
    big = [os.path.getsize(src / n) for n in ("weights.bin", "random.bin")]
    assert shared >= aligned_size(*big), (shared, total)
    assert shared_bytes(src / "weights.bin")[0] >= aligned_size(big[0])  # the input's side too
    # ext4 (tmp_path): nothing shared, same bytes
    ref = build(model(tmp_path / "model"), tmp_path / "out", fmt)
    if fmt == "zip-store":
        assert out.read_bytes() == ref.read_bytes()
        assert shared_bytes(ref)[0] == 0


@pytest.mark.parametrize("how", ["across file systems", "kernel copy off"])
def test_fallbacks_give_the_same_bytes_and_share_nothing(xfs: Path, tmp_path: Path, how: str):
    here = xfs / f"fallback-{how.replace(' ', '-')}"
    src = model(tmp_path / "model") if how == "across file systems" else model(here / "model")
    env = {**os.environ, "MAR_TASKS_BLOCK_COPY": "plain"} if how == "kernel copy off" else None
    args = ["--model-name", "m", "--model-path", str(src), "--handler", "service:handle",
            "--archive-format", "zip-store", "--export-path", str(here / "out"), "-q", "-f"]
    subprocess.run([sys.executable, "-m", "mar_tasks", *args], check=True, env=env)
    out = here / "out/m.mar"
    ref = build(model(tmp_path / "ref"), tmp_path / "refout", "zip-store")
    assert out.read_bytes() == ref.read_bytes()
    assert shared_bytes(out)[0] == 0


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_a_rebuild_clones_the_entries_it_carries_over(xfs: Path, fmt: str):
    proj = xfs / f"rebuild-{fmt}"
    model(proj / "model")
    time.sleep(2.1)  # inputs changed within 2 s of a build are read again by the next one
    (proj / "dodo.py").write_text(DODO)
    (proj / "pyproject.toml").write_text(
        '[tool.mar_tasks.models.m]\nmodel-path = "model"\nhandler = "service:handle"\n'
        f'export-path = "out"\narchive-format = "{fmt}"\n')
    assert doit(proj, "archive").rc == 0
    out = proj / "out/m.mar"
    os.link(out, proj / "old.mar")  # keeps the replaced archive's blocks alive to compare
    (proj / "model/service.py").write_text(HANDLER + "# edited\n")
    r = doit(proj, "archive")
    assert r.rc == 0 and r.built == {"m"}, r.out
    with zipfile.ZipFile(out) as z:  # (deflated weights.bin can only share with old.mar)
        carried = [z.getinfo(n).compress_size for n in ("weights.bin", "random.bin")]
    shared, _ = shared_bytes(out)
    assert shared >= aligned_size(*carried), (shared, carried)
    ref = build(proj / "model", proj / "full", fmt)
    assert out.read_bytes() == ref.read_bytes()


def test_only_a_rename_over_a_name_on_ext4_is_said_to_write_back(xfs: Path, tmp_path: Path):
    """The zip writer starts the writeback early only where the publishing rename would do
    it anyway (ext4's auto_da_alloc over an existing name); elsewhere it is the flusher's."""
    from mar_tasks.atomic import rename_writes_back
    on_xfs = write_tree(xfs / "wb", {"old.mar": b"x"})
    assert not rename_writes_back(on_xfs / "old.mar")
    assert not rename_writes_back(tmp_path / "missing.mar")
    here = write_tree(tmp_path, {"old.mar": b"x"}) / "old.mar"
    kind = subprocess.run(["stat", "-f", "-c", "%T", str(here)], capture_output=True, text=True).stdout
    assert rename_writes_back(here) == (kind.strip() == "ext2/ext3"
                                        and "ext4" in Path("/proc/self/mountinfo").read_text())


@pytest.mark.parametrize("fmt", ["default", "zip-store"])
def test_the_early_writeback_changes_no_byte(tmp_path: Path, monkeypatch, fmt: str):
    from mar_tasks import atomic
    from mar_tasks.formats import zip_writer
    calls = []
    fadvise = os.posix_fadvise
    monkeypatch.setattr(zip_writer, "WRITEBACK", 1 << 16)
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: calls.append(a) or fadvise(*a))
    src = model(tmp_path / "src")
    first = build(src, tmp_path / "o", fmt).read_bytes()           # a new name: no writeback
    assert calls == []
    monkeypatch.setattr(atomic, "rename_writes_back", lambda target: True)
    assert build(src, tmp_path / "o", fmt).read_bytes() == first
    assert bool(calls) == (fmt == "default")   # deflated output only; stored data is copied
