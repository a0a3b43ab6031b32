"""Remembered listings (mar_tasks.tasks.remembered_listings): a no-op walks no folder, and no change to
what an archive holds can hide behind a remembered listing.

A listing is only remembered for folders changed more than RACY_NS before they were read,
so each project here is left to age that long (real time: ctime cannot be set back).
"""
from __future__ import annotations

import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import HANDLER, write_tree
from doit_helpers import doit, doit_spawned, make_project, saved_states
from mar_tasks.tasks import remembered_listings as listing_cache
AGE = listing_cache.RACY_NS / 1e9 + 0.2


def aged_project(root: Path, models: int = 2, **kw: Any) -> Path:
    project = make_project(root, models, **kw)
    time.sleep(AGE)
    return project


def listings(project: Path) -> Dict[str, tuple]:
    cache = listing_cache.ListingCache(str(project), writable=False)
    assert not cache.foreign
    return cache.old


def tasks_in_process(project: Path, monkeypatch: pytest.MonkeyPatch, cached: bool) -> Dict[str, Dict[str, Any]]:
    """The archive tasks as doit would load them, made in this process."""
    from mar_tasks.tasks import archive_tasks as doit_tasks
    monkeypatch.chdir(project)
    monkeypatch.setenv("MAR_TASKS_LISTING_CACHE", "1" if cached else "0")
    tasks = {t["name"]: t for t in doit_tasks.project_tasks() if t["name"]}
    return {n: {"file_dep": list(t["file_dep"]), "targets": list(t["targets"]),
                "clean": list(t["clean"][0][1][1]), "config": t["actions"][0][1][1]}
            for n, t in tasks.items()}


def test_noop_walks_no_folder_and_gives_the_walked_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = aged_project(tmp_path / "p", 3)
    assert doit(project, "archive").built == {"m0", "m1", "m2"}
    assert set(listings(project)) == {"m0", "m1", "m2"}
    walked = tasks_in_process(project, monkeypatch, cached=False)

    import mar_tasks.plan.selection

    def no_walk(*a: Any, **k: Any) -> None:
        raise AssertionError("a remembered listing was walked again")

    monkeypatch.setattr(mar_tasks.plan.selection, "select_files", no_walk)
    assert tasks_in_process(project, monkeypatch, cached=True) == walked
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == set() and r.skipped == {"m0", "m1", "m2"}, r.out


def _add_top(m: Path) -> None:
    (m / "new.txt").write_text("new")


def _add_deep(m: Path) -> None:
    (m / "labels" / "more.txt").write_text("more")


def _new_folder(m: Path) -> None:
    write_tree(m / "extra" / "deeper", {"x.txt": "x"})


def _remove(m: Path) -> None:
    (m / "labels" / "l.txt").unlink()


def _rename(m: Path) -> None:
    (m / "weights.bin").rename(m / "weights2.bin")


def _replace_folder(m: Path) -> None:
    shutil.rmtree(m / "labels")
    write_tree(m / "labels", {"other.txt": "o"})


def _swap_model(m: Path) -> None:
    """The model folder replaced by another with the same names (git checkout, restore)."""
    shutil.move(str(m), str(m.parent.parent / "old"))
    write_tree(m, {"service.py": HANDLER, "weights.bin": b"w", "labels/l.txt": "x", "labels/z.txt": "z"})


def _excluded(m: Path) -> None:
    (m / ".hidden").write_text("h")


@pytest.mark.parametrize("change", [_add_top, _add_deep, _new_folder, _remove, _rename,
                                    _replace_folder, _swap_model, _excluded])
def test_every_change_to_what_is_archived_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change):
    project = aged_project(tmp_path / "p")
    doit(project, "archive")
    assert "m1" in listings(project)
    change(project / "zoo" / "m1")
    # Right after the change (racily new folders included) the listing is the walked one.
    assert tasks_in_process(project, monkeypatch, cached=True) == \
        tasks_in_process(project, monkeypatch, cached=False)
    r = doit(project, "archive")
    assert r.rc == 0, r.out
    if change is not _excluded:
        assert r.built == {"m1"}, r.out
    with zipfile.ZipFile(project / "store" / "m1.mar") as z:
        names = {n for n in z.namelist() if not n.startswith("MAR-INF")}
    m1 = project / "zoo" / "m1"
    assert names == {p.relative_to(m1).as_posix() for p in m1.rglob("*")
                     if p.is_file() and not p.name.startswith(".")}
    assert doit(project, "archive").built == set()


def test_a_folder_changed_just_before_it_was_read_is_not_remembered(tmp_path: Path):
    project = make_project(tmp_path / "p")  # not aged
    doit(project, "archive")
    assert listings(project) == {}


def test_a_model_with_a_symlink_is_walked_every_time(tmp_path: Path):
    """What a link points to can change while no folder's stamp moves (a retargeted link
    in a hidden, unwalked folder, say), so such a model is never remembered."""
    project = make_project(tmp_path / "p")
    (project / "zoo" / "m0" / "vocab").symlink_to(project / "zoo" / "m0" / "labels")
    time.sleep(AGE)
    doit(project, "archive")
    assert set(listings(project)) == {"m1", "m2"}
    (project / "zoo" / "m0" / "labels" / "n.txt").write_text("n")
    assert doit(project, "archive").built == {"m0"}
    with zipfile.ZipFile(project / "store" / "m0.mar") as z:
        assert "vocab/n.txt" in z.namelist()


@pytest.mark.parametrize("content", [b"", b"mar_tasks listings\n", b"mar_tasks listings\n\xff\x00garbage",
                                     b"mar_tasks listings\n" + b"\xe3" * 100])
def test_a_damaged_listing_file_is_ignored_and_replaced(tmp_path: Path, content: bytes):
    project = aged_project(tmp_path / "p")
    (project / listing_cache.FILE_NAME).write_bytes(content)
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == {"m0", "m1"}, r.out
    if content:
        assert set(listings(project)) == {"m0", "m1"}


def test_a_file_of_that_name_that_is_not_ours_is_left_alone(tmp_path: Path):
    project = aged_project(tmp_path / "p")
    theirs = project / listing_cache.FILE_NAME
    theirs.write_text("my notes\n")
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == {"m0", "m1"}, r.out
    assert "was not written by mar_tasks, so model listings are not remembered" in r.out
    assert doit(project, "archive").built == set()
    assert theirs.read_text() == "my notes\n"


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_a_link_fifo_or_folder_of_that_name_is_never_opened_or_replaced(tmp_path: Path, kind: str):
    project = aged_project(tmp_path / "p")
    spot = project / listing_cache.FILE_NAME
    if kind == "symlink":
        (project / "notes.txt").write_text("mine\n")
        spot.symlink_to("notes.txt")
    elif kind == "fifo":
        os.mkfifo(spot)
    else:
        spot.mkdir()
    for _ in range(2):
        r = doit(project, "archive")
        assert r.rc == 0 and "listings are not remembered" in r.out, r.out
    assert (spot.is_symlink() and (project / "notes.txt").read_text() == "mine\n") \
        if kind == "symlink" else (spot.is_fifo() if kind == "fifo" else spot.is_dir())


def test_the_cache_can_be_turned_off(tmp_path: Path):
    project = aged_project(tmp_path / "p")
    env = {**os.environ, "MAR_TASKS_LISTING_CACHE": "0"}
    assert doit(project, "archive", env=env).built == {"m0", "m1"}
    assert doit(project, "archive", env=env).built == set()
    assert not (project / listing_cache.FILE_NAME).exists()


def test_a_shard_keeps_the_other_shards_listings(tmp_path: Path):
    project = aged_project(tmp_path / "p", 4)
    doit(project, "archive")
    before = listings(project)
    assert len(before) == 4
    (project / "zoo" / "m0" / "new.txt").write_text("n")
    (project / "zoo" / "m1" / "new.txt").write_text("n")
    time.sleep(AGE)
    doit(project, "archive", "--shard", "1/2")
    doit(project, "archive", "--shard", "2/2")
    after = listings(project)
    assert set(after) == {"m0", "m1", "m2", "m3"}
    assert after["m2"] == before["m2"] and after["m0"] != before["m0"] and after["m1"] != before["m1"]


def test_touched_inputs_are_refreshed_with_a_remembered_listing(tmp_path: Path):
    """Touch every input: the next run finds a moved mtime and refreshes every state, so
    the run after it has nothing to hash."""
    project = aged_project(tmp_path / "p")
    doit(project, "archive")
    doit(project, "archive")  # the listing is remembered now
    later = time.time() + 100
    for p in (project / "zoo").rglob("*"):
        if p.is_file():
            os.utime(p, (later, later))
    r = doit(project, "archive")
    assert r.built == set() and r.skipped == {"m0", "m1"}, r.out
    for task in ("archive:m0", "archive:m1"):
        assert all(abs(s[0] - later) < 1e-3 for s in saved_states(project, task).values())


def test_a_large_touched_input_is_refreshed_on_the_next_run(tmp_path: Path):
    """Inputs of 1 MiB or more are checked on every run: hashing them again is what costs."""
    project = make_project(tmp_path / "p", 1)
    write_tree(project / "zoo" / "m0", {**{f"small{i}.txt": str(i) for i in range(30)},
                                        "big.bin": os.urandom(2 << 20)})
    time.sleep(AGE)
    doit(project, "archive")
    doit(project, "archive")
    big = project / "zoo" / "m0" / "big.bin"
    later = time.time() + 100
    os.utime(big, (later, later))
    assert doit(project, "archive").built == set()
    assert abs(saved_states(project, "archive:m0")["zoo/m0/big.bin"][0] - later) < 1e-3


def test_listing_records_are_checked_before_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A record whose options, folder or stamps do not match is not used."""
    project = aged_project(tmp_path / "p")
    doit(project, "archive")
    cache = listing_cache.ListingCache(str(project), writable=False)
    name, record = next(iter(cache.old.items()))
    listing = listing_cache.Listing(*record)
    assert cache.lookup(name, listing.key, listing.cwd) is not None
    assert cache.lookup(name, listing.key + "x", listing.cwd) is None
    assert cache.lookup(name, listing.key, listing.cwd + "/elsewhere") is None
    damaged: List[Any] = list(record)
    damaged[6] = (("d", "/nonexistent", 0, 0, 0, 0),)
    cache.old[name] = tuple(damaged)
    assert cache.lookup(name, listing.key, listing.cwd) is None
    damaged[6] = "not stamps"
    cache.old[name] = tuple(damaged)
    assert cache.lookup(name, listing.key, listing.cwd) is None
    damaged = list(record)
    damaged[4] = (*listing.deps, 42)  # file_dep doit would refuse
    cache.old[name] = tuple(damaged)
    assert cache.lookup(name, listing.key, listing.cwd) is None
    cache.old[name] = tuple(record)[:5]
    assert cache.lookup(name, listing.key, listing.cwd) is None


def test_tasks_made_from_listings_build_in_spawned_workers_and_alone(tmp_path: Path):
    """A task made from a remembered listing carries the model's declaration, turned into
    options in the build: it must pickle to a spawned worker and honour --force."""
    project = aged_project(tmp_path / "p", 3)
    doit(project, "archive")
    doit(project, "archive")  # remembered now
    for i in range(3):
        (project / "zoo" / f"m{i}" / "weights.bin").write_bytes(b"changed %d" % i)
    r = doit_spawned(project, "-n", "2", "-P", "process", "archive")
    assert r.returncode == 0, r.stdout + r.stderr
    for i in range(3):
        with zipfile.ZipFile(project / "store" / f"m{i}.mar") as z:
            assert z.read("weights.bin") == b"changed %d" % i
    assert set(listings(project)) == {"m0", "m1", "m2"}
    before = (project / "store" / "m2.mar").stat().st_mtime_ns
    r = doit(project, "archive:m1", "--force")
    assert r.rc == 0 and r.built == {"m1"}, r.out
    assert (project / "store" / "m2.mar").stat().st_mtime_ns == before
    r = doit(project, "clean", "archive")
    assert r.rc == 0 and sorted(os.listdir(project / "store")) == [], r.out
