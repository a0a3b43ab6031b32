"""The user's files are sacred: an output never is, holds or sits inside an input, and
nothing mar_tasks did not create is ever removed.

Every test takes a snapshot of every file, folder and link under tmp_path first and checks
afterwards that each is still there, byte for byte (new files may appear, none may go).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

from conftest import HANDLER, run_cli_process, write_tree
from doit_helpers import DODO, doit

Snapshot = Dict[str, Tuple[str, bytes]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under `root`, but mar_tasks' own lock file (it holds the last run's pid)
    and remembered listings (rewritten when a model's folders change)."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name in (".mar_tasks.lock", ".mar_tasks.listings"):
                continue
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p).encode())
            elif p.is_dir():
                out[rel] = ("dir", b"")
            elif p.is_file():
                out[rel] = ("file", p.read_bytes())
            else:
                out[rel] = ("other", b"")
    return out


def assert_all_kept(before: Snapshot, root: Path) -> None:
    after = snapshot(root)
    lost = {k: v[0] for k, v in before.items() if after.get(k) != v}
    assert not lost, f"pre-existing entries lost or changed: {lost}"


def user_model(folder: Path) -> Path:
    """A model folder with what users keep beside their model: excluded files included."""
    return write_tree(folder, {
        "service.py": HANDLER, "w.bin": b"\1" * 1000, ".git/HEAD": "ref: main\n",
        "__pycache__/service.cpython-311.pyc": b"\0pyc", "old.mar": b"PK old", "notes.txt": "n",
    })


OVERLAPS = [
    # (model path, export path, model name, format, expected wording)
    ("store/m", "store", "m", "no-archive", "would replace the model path"),
    ("store/m/src", "store", "m", "no-archive", "would hold (and so replace) the model path"),
    ("store/m", "store/m", "x", "default", "would sit inside the model path"),
    ("store/m", "store/m/out", "x", "tgz", "would sit inside the model path"),
    ("store/m", ".", "store", "no-archive", "would hold (and so replace) the model path"),
    (".", ".", "m", "default", "would sit inside the model path"),
]


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("model_path,export,name,fmt,wording", OVERLAPS)
def test_output_overlapping_model_path_is_refused(tmp_path: Path, model_path, export, name, fmt,
                                                  wording, force):
    user_model(tmp_path / model_path)
    if fmt == "no-archive" and name == "m" and model_path.startswith("store/m/"):
        write_tree(tmp_path / "store/m", {"other.txt": "keep me"})
    before = snapshot(tmp_path)
    args = ["--model-name", name, "--model-path", model_path, "--handler", "service",
            "--export-path", export, "--archive-format", fmt] + (["-f"] if force else [])
    r = run_cli_process(args, tmp_path)
    assert r.returncode == 1 and wording in r.stderr, r.stderr
    assert "--export-path outside it" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert_all_kept(before, tmp_path)
    assert snapshot(tmp_path).keys() == before.keys()  # and nothing new


@pytest.mark.parametrize("fmt", ["no-archive", "default"])
def test_symlinks_do_not_get_around_the_rule(tmp_path: Path, fmt: str):
    user_model(tmp_path / "real/m")
    os.symlink("real", tmp_path / "alias")           # export path through a link
    os.symlink("real/m", tmp_path / "mlink")         # model path through a link
    before = snapshot(tmp_path)
    name = "m" if fmt == "no-archive" else "x"
    cases = [["--model-path", "real/m", "--export-path", "alias" + ("" if fmt == "no-archive" else "/m")],
             ["--model-path", "mlink", "--export-path", "real" + ("" if fmt == "no-archive" else "/m")]]
    for paths in cases:
        r = run_cli_process(["--model-name", name, "--handler", "service", "--archive-format", fmt,
                             "-f", *paths], tmp_path)
        assert r.returncode == 1 and "--export-path outside it" in r.stderr, r.stderr
    assert_all_kept(before, tmp_path)


def test_named_inputs_are_never_outputs(tmp_path: Path):
    user_model(tmp_path / "model")
    write_tree(tmp_path, {"store/m.mar": b"PK user's file", "store/m/labels.txt": "l"})
    before = snapshot(tmp_path)
    base = ["--model-name", "m", "--model-path", "model", "--handler", "service", "--export-path",
            "store", "-f"]
    r = run_cli_process(base + ["--extra-files", "store/m.mar"], tmp_path)
    assert r.returncode == 1 and "would replace the extra file" in r.stderr, r.stderr
    r = run_cli_process(base + ["--serialized-file", "store/m.mar"], tmp_path)
    assert r.returncode == 1 and "would replace the serialized file" in r.stderr, r.stderr
    r = run_cli_process(base + ["--archive-format", "no-archive", "--extra-files", "store/m"], tmp_path)
    assert r.returncode == 1 and "extra files folder" in r.stderr, r.stderr
    r = run_cli_process(base + ["--archive-format", "no-archive", "--extra-files",
                                "store/m/labels.txt"], tmp_path)
    assert r.returncode == 1 and "would hold (and so replace) the extra file" in r.stderr, r.stderr
    assert_all_kept(before, tmp_path)


def test_doit_task_with_overlap_fails_alone_and_touches_nothing(tmp_path: Path):
    user_model(tmp_path / "store/m")
    user_model(tmp_path / "ok")
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mar_tasks.defaults]\nexport-path = "store"\nhandler = "service"\n'
        'archive-format = "no-archive"\nforce = true\n'
        '[tool.mar_tasks.models.m]\nmodel-path = "store/m"\n'
        '[tool.mar_tasks.models.ok]\nmodel-path = "ok"\n')
    before = snapshot(tmp_path)
    run = doit(tmp_path, "--continue", "archive", check=False)
    assert run.rc != 0 and "mar_tasks: m: the output" in run.out and "would replace" in run.out
    assert "Traceback" not in run.out
    assert (tmp_path / "store/ok/MAR-INF/MANIFEST.json").is_file()  # the other model built
    assert_all_kept(before, tmp_path)
    run = doit(tmp_path, "clean", "archive")
    assert run.rc == 0, run.out
    assert_all_kept(before, tmp_path)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_clean_up_removes_only_our_dead_temporaries(tmp_path: Path):
    user_model(tmp_path / "model")
    dead = _dead_pid()
    store = tmp_path / "store"
    store.mkdir()
    # Look like ours by name, but are not ours to remove:
    os.symlink("../model", store / f".mar_tasks-{dead}-0123abcd.tmp")        # a link
    os.mkfifo(store / f".mar_tasks-{dead}-0123abce.tmp")                     # a FIFO
    write_tree(store, {f".mar_tasks-{dead}-0123abcf.tmp/mine.txt": "user"})  # a foreign folder
    write_tree(store, {f".mar_tasks-{os.getpid()}-0123abd0.tmp": "alive"})   # a live process's
    write_tree(store, {f".mar_tasks-{dead}-XYZ.tmp": "x", f"mar_tasks-{dead}-0123abd1.tmp": "x",
                       f".mar_tasks-{dead}-0123abd2.tmp.bak": "x", "m.mar.tmp": "x"})
    before = snapshot(tmp_path)
    # ...and two that are: a dead build's file and a dead build's folder
    write_tree(store, {f".mar_tasks-{dead}-0123abd3.tmp": "torn",
                       f".m.mar.mar_tasks-{dead}-0123abd4.tmp": "torn (0.1.0 name)",
                       f".mar_tasks-{dead}-0123abd5.tmp/MAR-INF/MANIFEST.json": "{}"})
    r = run_cli_process(["--model-name", "m", "--model-path", "model", "--handler", "service",
                         "--export-path", "store"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert_all_kept(before, tmp_path)
    for name in (f".mar_tasks-{dead}-0123abd3.tmp", f".m.mar.mar_tasks-{dead}-0123abd4.tmp",
                 f".mar_tasks-{dead}-0123abd5.tmp"):
        assert not os.path.lexists(store / name)


def test_doit_clean_removes_only_what_it_wrote(tmp_path: Path):
    user_model(tmp_path / "model")
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mar_tasks.defaults]\nexport-path = "store"\nhandler = "service"\n'
        '[tool.mar_tasks.models.f]\nmodel-path = "model"\narchive-format = "no-archive"\n'
        '[tool.mar_tasks.models.z]\nmodel-path = "model"\n'
        '[tool.mar_tasks.models.t]\nmodel-path = "model"\narchive-format = "tgz"\n')
    write_tree(tmp_path, {"store/keep.txt": "k"})
    assert doit(tmp_path, "archive").rc == 0
    write_tree(tmp_path, {"store/f/mine.txt": "added by hand", "store/other.mar": b"PK foreign"})
    before = {k: v for k, v in snapshot(tmp_path).items()
              if not k.startswith(("store/f/", "store/z.mar", "store/t.tar.gz", ".doit",
                                          ".mar_tasks.builds"))}
    run = doit(tmp_path, "clean", "archive")
    assert run.rc == 0, run.out
    assert_all_kept(before, tmp_path)
    assert (tmp_path / "store/f/mine.txt").read_text() == "added by hand"
    assert sorted(os.listdir(tmp_path / "store/f")) == ["mine.txt"]
    assert not (tmp_path / "store/z.mar").exists() and not (tmp_path / "store/t.tar.gz").exists()
    assert "kept" in run.out and "store/f" in run.out


@pytest.mark.parametrize("kind", ["file", "symlink", "folder link"])
def test_a_file_of_the_users_where_a_build_record_goes_is_left_alone(tmp_path: Path, kind: str):
    """The build record of an output (what a rebuild carries over on) is never written
    over, nor removed by ``doit clean``, unless it is one mar_tasks wrote."""
    from mar_tasks.tasks.build_records import record_path
    user_model(tmp_path / "model")
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mar_tasks.models.z]\nmodel-path = "model"\nhandler = "service"\nexport-path = "store"\n')
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        where = tmp_path / record_path(str(tmp_path / "store/z.mar"))
    finally:
        os.chdir(here)
    (tmp_path / "notes.txt").write_text("mine")
    if kind == "folder link":  # nothing is written through a link in place of the folder
        (tmp_path / "mine").mkdir()
        where.parent.symlink_to(tmp_path / "mine")
    else:
        where.parent.mkdir()
    if kind == "file":
        where.write_text('{"format": "mine"}')
    elif kind == "symlink":
        where.symlink_to(tmp_path / "notes.txt")
    before = snapshot(tmp_path)
    assert doit(tmp_path, "archive").rc == 0
    assert_all_kept(before, tmp_path)
    (tmp_path / "model/service.py").write_text(HANDLER + "# edited\n")
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith((".doit", "store"))}
    assert doit(tmp_path, "archive").built == {"z"}
    assert doit(tmp_path, "clean", "archive").rc == 0
    assert_all_kept(before, tmp_path)
    if kind == "folder link":
        assert os.listdir(tmp_path / "mine") == []


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_something_else_named_like_the_lock_is_left_alone(tmp_path: Path, kind: str):
    """A link named .mar_tasks.lock is never followed (its target would be truncated), a
    FIFO never waited on: one line, and the run goes on without the lock."""
    from doit_helpers import make_project
    project = make_project(tmp_path / "p", 1)
    (project / "notes.txt").write_text("mine\n")
    lock = project / ".mar_tasks.lock"
    if kind == "symlink":
        lock.symlink_to("notes.txt")
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == {"m0"}, r.out
    assert f"cannot use {lock} as the project's lock (it is a" in r.out, r.out
    assert "Traceback" not in r.out
    assert (project / "notes.txt").read_text() == "mine\n"
    assert lock.is_symlink() if kind == "symlink" else lock.is_fifo() if kind == "fifo" else lock.is_dir()


def test_a_users_folder_at_a_no_archive_target_with_a_bottomless_manifest(tmp_path: Path):
    """Is that folder ours? Its manifest is JSON nested without end: not ours, one line,
    no traceback, from doit archive and doit clean alike, and the folder is kept."""
    user_model(tmp_path / "model")
    (tmp_path / "dodo.py").write_text(DODO)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.mar_tasks.models.m]\nmodel-path = "model"\nhandler = "service"\n'
        'export-path = "store"\narchive-format = "no-archive"\n')
    write_tree(tmp_path, {"store/m/MAR-INF/MANIFEST.json": "[" * 5000 + "]" * 5000})
    before = snapshot(tmp_path)
    run = doit(tmp_path, "archive", check=False)
    assert run.rc != 0 and "already exists" in run.out and "Traceback" not in run.out
    run = doit(tmp_path, "clean", "archive")
    assert "Traceback" not in run.out
    assert_all_kept(before, tmp_path)
