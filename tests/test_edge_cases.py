"""mar-archive edge cases a careless user or an attacker finds: link loops, odd names,
long names, what is in the way at the target, folders left by a failed build."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import HANDLER, all_files, run_cli_process, write_tree

M = ["--model-path", "model", "--handler", "service"]


def one_line_error(r, text: str) -> None:
    assert r.returncode == 1, r.stderr
    assert text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("links", [{"a": "a"}, {"a": "b", "b": "a"}, {"sub/a": "../sub/a"}])
def test_symlink_loop_is_an_error(tmp_path: Path, links):
    write_tree(tmp_path / "model", {"service.py": HANDLER, "sub/x": "x"})
    for name, target in links.items():
        os.symlink(target, tmp_path / "model" / name)
    before = all_files(tmp_path)
    r = run_cli_process(["--model-name", "m", *M], tmp_path)
    one_line_error(r, "cannot be followed")
    assert all_files(tmp_path) == before


@pytest.mark.parametrize("name", ["ab\n", "a\nb", "a\tb", "a\x1b[2Jb", "a\x7f", "a\u0085"])
def test_control_characters_in_model_name_are_refused(tmp_path: Path, name: str):
    write_tree(tmp_path / "model", {"service.py": HANDLER})
    r = run_cli_process(["--model-name", name, *M], tmp_path)
    one_line_error(r, "invalid model name")
    assert os.listdir(tmp_path) == ["model"]


def test_control_characters_in_file_names_are_refused(tmp_path: Path):
    write_tree(tmp_path / "model", {"service.py": HANDLER, "evil\x1b[31m.txt": "x"})
    r = run_cli_process(["--model-name", "m", *M], tmp_path)
    one_line_error(r, "holds control or invisible characters")


def _name_max(folder: Path) -> int:
    return os.pathconf(folder, "PC_NAME_MAX")


@pytest.mark.parametrize("fmt,suffix", [("default", ".mar"), ("tgz", ".tar.gz"), ("no-archive", "")])
def test_every_name_the_file_system_holds_builds(tmp_path: Path, fmt: str, suffix: str):
    write_tree(tmp_path / "model", {"service.py": HANDLER})
    longest = "m" * (_name_max(tmp_path) - len(suffix))
    for name in (longest[:222], longest[:240], longest):
        r = run_cli_process(["--model-name", name, *M, "--archive-format", fmt, "-q"], tmp_path)
        assert r.returncode == 0, r.stderr
        assert os.path.lexists(tmp_path / (name + suffix))
    r = run_cli_process(["--model-name", longest + "m", *M, "--archive-format", fmt], tmp_path)
    one_line_error(r, "model name is too long")
    assert "shorten the model name" in r.stderr


@pytest.mark.parametrize("existing", ["", "x", "x/y"])
def test_failed_build_removes_every_folder_it_created(tmp_path: Path, existing: str):
    """The build fails after the export folders were made (an input changes mid-build)."""
    from mar_tasks import ArchiveError, ArchiveOptions, build_archive
    model = write_tree(tmp_path / "model", {"a.bin": b"a" * 1000, "service.py": HANDLER,
                                            "z.bin": os.urandom(2 << 20)})
    if existing:
        write_tree(tmp_path / existing, {"keep.txt": "k"})
    before = all_files(tmp_path)

    def change_input(total: int):
        def tick(n: int) -> None:
            (model / "a.bin").write_bytes(b"b" * 1001)
        return tick

    opts = ArchiveOptions(model_name="m", handler="service", model_path=model,
                          export_path=tmp_path / "x/y/z").resolved(tmp_path)
    with pytest.raises(ArchiveError, match="changed while it was being archived"):
        build_archive(opts, progress=change_input)
    assert all_files(tmp_path) == before


@pytest.mark.parametrize("force", [[], ["-f"]])
def test_folder_in_the_way_of_an_archive_is_named(tmp_path: Path, force):
    write_tree(tmp_path, {"model/service.py": HANDLER, "m.mar/inside.txt": "user data"})
    r = run_cli_process(["--model-name", "m", *M, *force], tmp_path)
    one_line_error(r, "m.mar is a folder, so it is not replaced even with -f/--force")
    assert (tmp_path / "m.mar/inside.txt").read_text() == "user data"


@pytest.mark.parametrize("force", [[], ["-f"]])
def test_file_in_the_way_of_a_no_archive_folder_is_named(tmp_path: Path, force):
    write_tree(tmp_path, {"model/service.py": HANDLER, "out/m": "user data"})
    r = run_cli_process(["--model-name", "m", *M, "--archive-format", "no-archive",
                         "--export-path", "out", *force], tmp_path)
    one_line_error(r, "is a file, not a folder")
    assert (tmp_path / "out/m").read_text() == "user data"


def test_fifo_at_the_target_never_blocks(tmp_path: Path):
    write_tree(tmp_path, {"model/service.py": HANDLER})
    os.mkfifo(tmp_path / "m.mar")
    r = run_cli_process(["--model-name", "m", *M], tmp_path, timeout=60)
    one_line_error(r, "already exists")
    # doit's "replace if ours" check must not open it either
    from mar_tasks.formats.ownership_stamp import is_ours
    assert is_ours(tmp_path / "m.mar") is False
