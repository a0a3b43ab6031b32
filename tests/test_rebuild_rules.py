"""When `doit archive` rebuilds: never less often than plain doit would (issue 18, item 5),
also when the archive itself would differ though doit sees nothing (item 6), and not when
nothing that changes the bytes changed (item 7). Real doit runs on real files; every run's
exit code is asserted, not only what it built."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Dict, Optional

import pytest

from doit_helpers import Run, doit, make_project
from mar_tasks.tasks import remembered_listings

AGE = remembered_listings.RACY_NS / 1e9 + 0.2


def ok(project: Path, env: Optional[Dict[str, str]] = None) -> Run:
    r = doit(project, "archive", env=env)
    assert r.rc == 0, r.out
    return r


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = make_project(tmp_path / "proj")
    assert ok(p).built == {"m0", "m1", "m2"}
    return p


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def member(project: Path, model: str, name: str) -> zipfile.ZipInfo:
    with zipfile.ZipFile(project / "store" / f"{model}.mar") as z:
        return z.getinfo(name)


# -- item 5: never keep an archive plain doit would rebuild ------------------------------

@pytest.mark.parametrize("aged", [False, True])
def test_new_content_under_a_refreshed_mtime_rebuilds(tmp_path: Path, aged: bool):
    """Touched (content unchanged): its new mtime goes into doit's state. New content that
    arrives later with that same mtime and size (a tarball with fixed mtimes) must still
    rebuild: plain doit, holding the older mtime, would hash it and rebuild."""
    p = make_project(tmp_path / "proj")
    if aged:  # the listing is remembered: the no-op path that stats no folder
        time.sleep(AGE)
    ok(p)
    w = p / "zoo/m1/weights.bin"
    fixed = (int(time.time()) - 3600) * 10**9
    set_mtime(w, fixed)
    assert ok(p).built == set()
    if aged:
        time.sleep(AGE)  # the refreshed record is no longer racily new
    assert ok(p).built == set()
    w.write_bytes(bytes([7]) * 5000)  # same size as before
    set_mtime(w, fixed)
    assert ok(p).built == {"m1"}
    with zipfile.ZipFile(p / "store/m1.mar") as z:
        assert z.read("weights.bin") == bytes([7]) * 5000
    assert ok(p).built == set()


# -- item 6: rebuild where the archive would differ, though doit sees no change ----------

def test_chmod_x_rebuilds_and_the_archive_records_it(project: Path):
    w = project / "zoo/m1/weights.bin"
    assert member(project, "m1", "weights.bin").external_attr >> 16 & 0o777 == 0o644
    w.chmod(0o755)
    assert ok(project).built == {"m1"}
    assert member(project, "m1", "weights.bin").external_attr >> 16 & 0o777 == 0o755
    assert ok(project).built == set()


def test_a_mode_change_the_archive_does_not_record_rebuilds_nothing(project: Path):
    (project / "zoo/m1/weights.bin").chmod(0o664)
    assert ok(project).built == set()
    assert ok(project).built == set()


@pytest.mark.parametrize("new", [bytes([9]) * 5000, b"shorter"], ids=["same size", "other size"])
def test_an_edit_with_its_mtime_put_back_rebuilds(tmp_path: Path, new: bytes):
    """`touch -r`: doit compares the mtime first and sees nothing; the ctime moved."""
    p = make_project(tmp_path / "proj")
    time.sleep(AGE)
    ok(p)
    assert ok(p).built == set()
    w = p / "zoo/m1/weights.bin"
    before = w.stat().st_mtime_ns
    w.write_bytes(new)
    set_mtime(w, before)
    assert ok(p).built == {"m1"}
    with zipfile.ZipFile(p / "store/m1.mar") as z:
        assert z.read("weights.bin") == new
    assert ok(p).built == set()


def test_touching_every_input_still_rebuilds_nothing_and_is_remembered(project: Path):
    later = time.time() + 100
    for f in (project / "zoo").rglob("*"):
        if f.is_file():
            os.utime(f, (later, later))
    assert ok(project).built == set()
    assert ok(project).built == set()


# -- item 7: no needless rebuilds -------------------------------------------------------

def test_equivalent_source_date_epoch_spellings_rebuild_nothing(project: Path):
    before = (project / "store/m0.mar").read_bytes()
    for value in ["", "10", "0010", " 10 ", "0", None]:
        env = dict(os.environ)
        env.pop("SOURCE_DATE_EPOCH", None)
        if value is not None:
            env["SOURCE_DATE_EPOCH"] = value
        assert ok(project, env).built == set(), repr(value)
    assert (project / "store/m0.mar").read_bytes() == before
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    assert ok(project, env).built == {"m0", "m1", "m2"}
    assert (project / "store/m0.mar").read_bytes() != before


def test_another_deflate_version_rebuilds(tmp_path: Path):
    """An ISA-L whose output differs would leave archives a fresh build no longer makes."""
    p = make_project(tmp_path / "proj")
    time.sleep(AGE)  # through remembered listings as well
    ok(p)
    assert ok(p).built == set()
    dodo = (p / "dodo.py").read_text()
    (p / "dodo.py").write_text("import isal\nisal.__version__ = '0.0.1-other'\n" + dodo)
    assert ok(p).built == {"m0", "m1", "m2"}
    assert ok(p).built == set()


def _cp_a(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def _rsync_a(src: Path, dst: Path) -> None:
    subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True)


def _tar(src: Path, dst: Path) -> None:
    """GNU tar's default format keeps mtimes to the second, as a CI cache's tarball does."""
    dst.mkdir()
    subprocess.run(f"tar -cf - . | tar -xf - -C '{dst}'", shell=True, cwd=src, check=True)


COPIES = [_cp_a, pytest.param(_rsync_a, marks=pytest.mark.skipif(
    shutil.which("rsync") is None, reason="rsync is not installed")), _tar]


@pytest.mark.parametrize("copy", COPIES)
def test_a_copied_project_rebuilds_nothing(tmp_path: Path, copy):
    """Contents and mtimes kept, inodes and ctimes new: each archive is verified by its
    stamp and adopted, each input's content checked against doit's record, once."""
    p = make_project(tmp_path / "proj")
    time.sleep(AGE)
    ok(p)
    archives = {n: (p / "store" / f"{n}.mar").read_bytes() for n in ("m0", "m1", "m2")}
    q = tmp_path / "copy"
    copy(p, q)
    assert ok(q).built == set()
    assert ok(q).built == set()
    assert {n: (q / "store" / f"{n}.mar").read_bytes() for n in archives} == archives
    # Still the rules above after adopting: an edit put back under its old mtime rebuilds.
    w = q / "zoo/m2/weights.bin"
    before = w.stat().st_mtime_ns
    w.write_bytes(bytes([5]) * 5000)
    set_mtime(w, before)
    assert ok(q).built == {"m2"}


def test_a_copy_with_an_edited_input_rebuilds_that_model(tmp_path: Path):
    p = make_project(tmp_path / "proj")
    ok(p)
    w = p / "zoo/m1/weights.bin"
    before = w.stat().st_mtime_ns
    w.write_bytes(bytes([3]) * 5000)
    set_mtime(w, before)
    q = tmp_path / "copy"
    _cp_a(p, q)
    assert ok(q).built == {"m1"}
    assert ok(q).built == set()


@pytest.mark.parametrize("where", ["data", "end", "local header time"])
def test_an_archive_damaged_under_its_old_mtime_is_rebuilt_not_adopted(project: Path, where: str):
    """(A local header's time is in no central directory field: the stamp covers it.)"""
    target = project / "store/m1.mar"
    good = target.read_bytes()
    st = target.stat()
    raw = bytearray(good)
    offset = member(project, "m1", "weights.bin").header_offset
    at = {"data": offset + 40, "end": len(raw) - 30, "local header time": offset + 10}[where]
    raw[at] ^= 0x01
    target.write_bytes(bytes(raw))
    set_mtime(target, st.st_mtime_ns)
    assert ok(project).built == {"m1"}
    assert target.read_bytes() == good


def test_another_of_our_archives_in_its_place_is_rebuilt(project: Path):
    """Ours, intact, same size and mtime, but another model's archive: not adopted."""
    (project / "zoo/m2/weights.bin").write_bytes(bytes([1]) * 5000)  # m2 now holds m1's bytes
    (project / "zoo/m2/labels/l.txt").write_text("1\n")
    assert ok(project).built == {"m2"}
    m1, m2 = project / "store/m1.mar", project / "store/m2.mar"
    st = m1.stat()
    other = m2.read_bytes()
    assert len(other) != len(m1.read_bytes()) or other != m1.read_bytes()
    m1.write_bytes(other)
    set_mtime(m1, st.st_mtime_ns)
    r = ok(project)
    assert r.built == {"m1"}
    with zipfile.ZipFile(m1) as z:
        assert "m1" in z.read("MAR-INF/MANIFEST.json").decode()



@pytest.mark.parametrize("copy", COPIES)
def test_a_copied_no_archive_project_rebuilds_nothing(tmp_path: Path, copy):
    """A no-archive folder has no stamp: with new inodes it is read once and adopted when
    every file is what the build wrote; a file changed under its size and mtime rebuilds."""
    p = make_project(tmp_path / "proj", extra_toml='archive-format = "no-archive"\n')
    time.sleep(AGE)
    ok(p)  # (copied at once: doit's states are checked against what the build read then)
    q = tmp_path / "copy"
    copy(p, q)
    assert ok(q).built == set()
    assert ok(q).built == set()
    w = q / "store/m1/weights.bin"
    st = w.stat()
    w.write_bytes(bytes([9]) * st.st_size)
    set_mtime(w, st.st_mtime_ns)
    r = tmp_path / "again"
    copy(q, r)
    assert ok(r).built == {"m1"}
    assert (r / "store/m1/weights.bin").read_bytes() == (r / "zoo/m1/weights.bin").read_bytes()


def test_a_copied_tgz_project_rebuilds_nothing(tmp_path: Path):
    """The same through the gzip header's stamp."""
    p = make_project(tmp_path / "proj", extra_toml='archive-format = "tgz"\n')
    ok(p)
    before = (p / "store/m1.tar.gz").read_bytes()
    q = tmp_path / "copy"
    _tar(p, q)
    assert ok(q).built == set()
    assert (q / "store/m1.tar.gz").read_bytes() == before
    raw = bytearray(before)
    raw[len(raw) // 2] ^= 0xFF  # damaged under its old size and mtime: not adopted
    st = (q / "store/m1.tar.gz").stat()
    (q / "store/m1.tar.gz").write_bytes(bytes(raw))
    set_mtime(q / "store/m1.tar.gz", st.st_mtime_ns)
    assert ok(q).built == {"m1"}
    assert (q / "store/m1.tar.gz").read_bytes() == before


def _write_under_old_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    set_mtime(path, st.st_mtime_ns)


@pytest.mark.parametrize("why", ["an option changed", "two inputs changed", "forced"])
def test_an_input_changed_under_its_mtime_and_back_is_never_kept_stale(tmp_path: Path, why: str):
    """An input changed under its old mtime is archived by a rebuild that something else
    decided (another option; another input first; --force). doit then keeps its old MD5
    (it hashes again only a file whose mtime moved), so when the input goes back to that
    content the archive, which holds the change, must still be rebuilt."""
    p = make_project(tmp_path / "proj", models=2)
    time.sleep(AGE)
    ok(p)
    weights, labels = p / "zoo/m1/weights.bin", p / "zoo/m1/labels/l.txt"
    old_weights = weights.read_bytes()
    _write_under_old_mtime(weights, bytes([7]) * len(old_weights))
    args = ("archive",)
    if why == "an option changed":
        toml = p / "pyproject.toml"
        toml.write_text(toml.read_text() + 'version = "2.0"\n')
    elif why == "two inputs changed":
        _write_under_old_mtime(labels, b"9\n")
    else:
        args = ("archive:m1", "--force")
    assert "m1" in doit(p, *args).built
    with zipfile.ZipFile(p / "store/m1.mar") as z:
        assert z.read("weights.bin") == bytes([7]) * len(old_weights)
    _write_under_old_mtime(weights, old_weights)  # (labels, checked first, stays changed)
    assert "m1" in ok(p).built
    with zipfile.ZipFile(p / "store/m1.mar") as z:
        assert z.read("weights.bin") == old_weights and z.read("labels/l.txt") == labels.read_bytes()
    assert ok(p).built == set()


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("change", ["fifo", "dangling link", "link to a copy", "chmod +x",
                                    "empty folder", "folder link"])
def test_a_copied_no_archive_folder_changed_by_hand_is_rebuilt(tmp_path: Path, change: str):
    """Whatever was done to a copied folder, adopting it never blocks, never fails, and
    never keeps what a build would not write: it is rebuilt as mar-archive writes it."""
    p = make_project(tmp_path / "proj", models=1, extra_toml='archive-format = "no-archive"\n')
    time.sleep(AGE)
    ok(p)
    q = tmp_path / "copy"
    _cp_a(p, q)
    out = q / "store/m0"
    f = out / "labels/l.txt"
    st = f.stat()
    if change == "fifo":
        _fifo(f)
    elif change == "dangling link":
        f.unlink()
        f.symlink_to(q / "nowhere")
    elif change == "link to a copy":
        (q / "copy.txt").write_bytes(f.read_bytes())
        f.unlink()
        f.symlink_to(q / "copy.txt")
    elif change == "chmod +x":
        f.chmod(0o755)
    elif change == "empty folder":
        (out / "extra").mkdir()
    else:
        (out / "extra").symlink_to(q / "zoo")
    if f.exists() and not f.is_symlink():
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = doit(q, "archive")
    assert r.built == {"m0"} and "Traceback" not in r.out, r.out
    assert sorted(os.listdir(out)) == sorted(os.listdir(p / "store/m0"))
    g = out / "labels/l.txt"
    assert not g.is_symlink() and g.read_bytes() == (q / "zoo/m0/labels/l.txt").read_bytes()
    assert oct(g.stat().st_mode & 0o777) == oct((p / "store/m0/labels/l.txt").stat().st_mode & 0o777)
