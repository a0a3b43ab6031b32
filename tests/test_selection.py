"""What goes into an archive: exclusions, the output itself, MAR-INF, symlinks, sort order."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import HANDLER, run_cli, write_tree
from mar_tasks import ArchiveError, ArchiveOptions, select_files

EXCLUDED = {
    ".hidden": "x", ".git/config": "x", "sub/.env": "x", "__MACOSX/._a": "x", ".DS_Store": "x",
    "sub/.DS_Store": "x", "MANIFEST.json": "{}", "sub/MANIFEST.json": "{}", "a.pyc": "x",
    "sub/__pycache__/m.cpython-311.pyc": "x", "__pycache__/x.py": "x", "old.mar": "x",
}


def opts(model: Path, **kw) -> ArchiveOptions:
    return ArchiveOptions(model_name="m", handler="service", model_path=model, **kw).resolved(model.parent)


def test_every_excluded_kind_is_left_out(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER, "sub/keep.txt": "k", **EXCLUDED})
    sel = select_files(opts(tmp_path / "m"))
    assert [e.arcname for e in sel.entries] == ["service.py", "sub/keep.txt"]


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_each_exclusion_alone(tmp_path: Path, name: str):
    write_tree(tmp_path / "m", {"service.py": HANDLER, name: "x"})
    assert [e.arcname for e in select_files(opts(tmp_path / "m")).entries] == ["service.py"]


def test_entries_are_sorted_and_subfolders_kept(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER, "b/z.txt": "", "a.txt": "", "B.txt": "", "b/a/y.txt": ""})
    names = [e.arcname for e in select_files(opts(tmp_path / "m")).entries]
    assert names == ["B.txt", "a.txt", "b/a/y.txt", "b/z.txt", "service.py"]


def test_export_path_inside_model_path_is_refused(model: Path, tmp_path: Path):
    # (tests/test_user_files.py checks every such case leaves every file in place)
    args = ["--model-name", "m", "--model-path", ".", "--handler", "service", "--export-path", "."]
    assert run_cli(args, model) == 1 and run_cli(args + ["-f"], model) == 1
    assert not (model / "m.mar").exists()


def test_mar_inf_in_model_path_is_an_error(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER, "MAR-INF/MANIFEST.json": "{}"})
    with pytest.raises(ArchiveError, match="MAR-INF is reserved"):
        select_files(opts(tmp_path / "m"))


def test_symlink_inside_model_path_is_followed(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER, "data/w.bin": "w"})
    os.symlink("data/w.bin", tmp_path / "m/link.bin")
    os.symlink("data", tmp_path / "m/dlink")
    names = [e.arcname for e in select_files(opts(tmp_path / "m")).entries]
    assert names == ["data/w.bin", "dlink/w.bin", "link.bin", "service.py"]


def test_symlink_escaping_model_path_is_refused(tmp_path: Path):
    write_tree(tmp_path, {"m/service.py": HANDLER, "secret.txt": "s"})
    os.symlink(tmp_path / "secret.txt", tmp_path / "m/secret.txt")
    with pytest.raises(ArchiveError, match="points outside"):
        select_files(opts(tmp_path / "m"))


def test_symlink_loop_and_dangling_link_are_refused(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER, "d/x.txt": "x"})
    os.symlink("..", tmp_path / "m/d/up")
    with pytest.raises(ArchiveError, match="loop"):
        select_files(opts(tmp_path / "m"))
    os.unlink(tmp_path / "m/d/up")
    os.symlink("nowhere", tmp_path / "m/dangling")
    with pytest.raises(ArchiveError, match="missing file or is a loop"):
        select_files(opts(tmp_path / "m"))


def test_empty_folders_are_not_stored(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER})
    (tmp_path / "m/empty/deeper").mkdir(parents=True)
    assert [e.arcname for e in select_files(opts(tmp_path / "m")).entries] == ["service.py"]


def test_extra_file_collision_is_an_error(tmp_path: Path):
    write_tree(tmp_path, {"m/service.py": HANDLER, "m/labels.txt": "a", "other/labels.txt": "b"})
    with pytest.raises(ArchiveError, match="two different files would be stored as labels.txt"):
        select_files(opts(tmp_path / "m", extra_files=(Path("other/labels.txt"),)))


def test_path_handler_outside_model_path_is_added_at_root(tmp_path: Path):
    write_tree(tmp_path, {"m/w.bin": "w", "code/my_handler.py": HANDLER})
    o = ArchiveOptions(model_name="m", handler="code/my_handler.py:handle", model_path=Path("m"))
    sel = select_files(o.resolved(tmp_path))
    assert [e.arcname for e in sel.entries] == ["my_handler.py", "w.bin"]
    assert sel.handler.manifest_value == "my_handler.py:handle"
