"""User errors: one line naming the problem and the fix, non-zero exit, no traceback, no file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HANDLER, all_files, run_cli_process, write_tree

M = ["--model-path", "model"]
CASES = [
    # (extra setup files, args, expected text in the message)
    ({}, ["--model-name", "9lives" + "!", *M, "--handler", "service"], "invalid model name"),
    ({}, ["--model-name", "", *M, "--handler", "service"], "model name is empty"),
    ({}, ["--model-name", "a/b", *M, "--handler", "service"], "invalid model name"),
    ({}, ["--model-name", "..", *M, "--handler", "service"], "invalid model name"),
    ({}, ["--model-name=-x", *M, "--handler", "service"], "invalid model name"),
    ({}, ["--model-name", "m", "--model-path", "nope", "--handler", "service"], "nope does not exist"),
    ({"afile": "x"}, ["--model-name", "m", "--model-path", "afile", "--handler", "service"], "is not a folder"),
    ({"exp": "x"}, ["--model-name", "m", *M, "--handler", "service", "--export-path", "exp"], "export path"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "--runtime", "java"], "invalid choice"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "--archive-format", "rar"], "invalid choice"),
    ({}, ["--model-name", "m", *M, "--handler", "nomodule"], "handler module 'nomodule' not found"),
    ({}, ["--model-name", "m", *M, "--handler", "service:nofunc"], "handler function 'nofunc' is not defined"),
    ({}, ["--model-name", "m", *M, "--handler", "service:"], "ends with ':'"),
    ({}, ["--model-name", "m", *M, "--handler", "missing/handler.py"], "handler file"),
    ({"model/bad.py": "def handle(:\n"}, ["--model-name", "m", *M, "--handler", "bad"], "syntax error at line 1"),
    ({"model/two.py": "class A: pass\nclass B: pass\n"}, ["--model-name", "m", *M, "--handler", "two"], "defines 2 classes"),
    ({"model/none.py": "x = 1\n"}, ["--model-name", "m", *M, "--handler", "none"], "defines 0 classes"),
    ({"model/nohandle.py": "class A:\n    def run(self): pass\n"}, ["--model-name", "m", *M, "--handler", "nohandle"], "has no handle() method"),
    ({"model/MAR-INF/x": "x"}, ["--model-name", "m", *M, "--handler", "service"], "MAR-INF is reserved"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "--serialized-file", "no.pt"], "serialized file"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "--model-file", "no.py"], "model file"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "--extra-files", "a.txt,no.txt"], "extra file"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "--extra-files", "*.nothing"], "matches nothing"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "-r", "no.txt"], "requirements file"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "-c", "no.yaml"], "config file"),
    ({"labels.txt": "b", "model/labels.txt": "a"}, ["--model-name", "m", *M, "--handler", "service", "--extra-files", "labels.txt"], "two different files"),
    ({}, ["--model-name", "m", "--handler", "service"], "handler module 'service' not found"),
    ({}, ["--model-name", "m", "--handler", "in/libh", "--runtime", "LSP"], "handler library 'in/libh.so' not found"),
    ({}, ["--model-name", "m", *M], "required: --handler"),
    ({}, ["--model-name", "m", *M, "--handler", "service", "-v", " "], "model version is empty"),
    # names --verify would refuse are refused before writing (red team F8, F15)
    ({"model/x:y": "x"}, ["--model-name", "m", *M, "--handler", "service"],
     "cannot archive x:y: its name starts with 'x:', which Windows readers take for a drive letter"),
    ({"model/c:": "x"}, ["--model-name", "m", *M, "--handler", "service"], "cannot archive c:"),
    ({"model/A": "x", "model/a/b": "y"}, ["--model-name", "m", *M, "--handler", "service"],
     "lies inside the file A (but for case"),
    ({"model/a\\b": "x"}, ["--model-name", "m", *M, "--handler", "service"], "backslash in name"),
]


@pytest.mark.parametrize("name,prefix", [("n" * 256, ""), ("a/" + "é" * 128, "m/"), ("d/" * 2000 + "x", "")])
def test_names_verify_would_refuse_are_refused_by_the_writer(name: str, prefix: str):
    """A file system cannot hold such names, but a name's bytes are checked all the same."""
    from mar_tasks.errors import ArchiveError
    from mar_tasks.plan.archive_limits import check_entry_names
    with pytest.raises(ArchiveError, match="cannot archive .*; rename it"):
        check_entry_names(["service.py", name], prefix)
    check_entry_names(["service.py", "n" * 255, "ab:c"], "m/")


@pytest.mark.parametrize("setup,args,message", CASES, ids=[c[2][:30] for c in CASES])
def test_bad_input_is_one_clean_line(tmp_path: Path, setup, args, message):
    write_tree(tmp_path, {"model/service.py": HANDLER, "model/w.bin": "w", "a.txt": "a", **setup})
    before = all_files(tmp_path)
    r = run_cli_process(args, tmp_path)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or lines[0].startswith("usage:"), r.stderr
    assert all_files(tmp_path) == before  # nothing left behind


def test_name_starting_with_digit_is_accepted_with_warning(tmp_path: Path):
    write_tree(tmp_path, {"model/service.py": HANDLER})
    r = run_cli_process(["--model-name", "3dnet", *M, "--handler", "service"], tmp_path)
    assert r.returncode == 0 and "starts with a digit" in r.stderr
    assert (tmp_path / "3dnet.mar").is_file()


def test_existing_output_without_force_is_left_untouched(tmp_path: Path):
    write_tree(tmp_path, {"model/service.py": HANDLER, "m.mar": "precious"})
    r = run_cli_process(["--model-name", "m", *M, "--handler", "service"], tmp_path)
    assert r.returncode == 1
    assert "m.mar already exists" in r.stderr and "-f/--force" in r.stderr
    assert (tmp_path / "m.mar").read_text() == "precious"
    r = run_cli_process(["--model-name", "m", *M, "--handler", "service", "-f"], tmp_path)
    assert r.returncode == 0
    assert (tmp_path / "m.mar").read_bytes()[:2] == b"PK"


@pytest.mark.parametrize("fmt,out", [("tgz", "m.tar.gz"), ("no-archive", "m")])
def test_force_applies_to_every_format(tmp_path: Path, fmt: str, out: str):
    write_tree(tmp_path, {"model/service.py": HANDLER})
    args = ["--model-name", "m", *M, "--handler", "service", "--archive-format", fmt]
    assert run_cli_process(args, tmp_path).returncode == 0
    r = run_cli_process(args, tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert run_cli_process(args + ["--force"], tmp_path).returncode == 0


def test_export_path_is_created_when_missing(tmp_path: Path):
    write_tree(tmp_path, {"model/service.py": HANDLER})
    r = run_cli_process(["--model-name", "m", *M, "--handler", "service", "--export-path", "a/b"], tmp_path)
    assert r.returncode == 0 and (tmp_path / "a/b/m.mar").is_file()


def test_stale_temporaries_are_cleaned(tmp_path: Path):
    write_tree(tmp_path, {"model/service.py": HANDLER})
    stale = tmp_path / ".mar_tasks-999999999-abcd0123.tmp"
    stale.write_bytes(b"torn")
    assert run_cli_process(["--model-name", "m", *M, "--handler", "service"], tmp_path).returncode == 0
    assert not stale.exists()


def _loop(root: Path) -> None:
    (root / "model/sub").mkdir()
    os.symlink("..", root / "model/sub/up")  # back to the model folder: an endless tree


def _escape(root: Path) -> None:
    (root / "outside.txt").write_text("secret")
    os.symlink(root / "outside.txt", root / "model/inside.txt")


def _dangling(root: Path) -> None:
    os.symlink("nowhere.bin", root / "model/w2.bin")


def _non_utf8(root: Path) -> None:
    with open(os.path.join(os.fsencode(root / "model"), b"bad\xffname.txt"), "w") as f:
        f.write("x")


def _fifo(root: Path) -> None:
    os.mkfifo(root / "model/pipe")


@pytest.mark.parametrize("make,args,message", [
    (_loop, [], "makes a loop"),
    (_escape, [], "points outside"),
    (_dangling, [], "points to a missing file"),
    (_non_utf8, [], "is not valid UTF-8"),
    (_fifo, [], "is not a regular file"),
    (None, ["--export-path", "/proc/no/such"], "cannot write"),
    (None, ["--export-path", "/sys/kernel"], "cannot write"),
], ids=["symlink-loop", "symlink-escape", "dangling-symlink", "non-utf8-name", "fifo",
        "export-unwritable-proc", "export-unwritable-sys"])
def test_bad_file_system_inputs_are_one_clean_line(tmp_path: Path, make, args, message):
    write_tree(tmp_path, {"model/service.py": HANDLER, "model/w.bin": "w"})
    if make:
        make(tmp_path)
    before = all_files(tmp_path)
    r = run_cli_process(["--model-name", "m", *M, "--handler", "service", *args], tmp_path)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert all_files(tmp_path) == before


def _as_nobody(args, cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI as an unprivileged user, so permissions apply (tests run as root)."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "mar_tasks", *args],
                          cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("case", ["unreadable-model-path", "unreadable-file", "unwritable-export"])
def test_permission_problems_are_one_clean_line(tmp_path: Path, case: str):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop to an unprivileged user")
    import tempfile
    root = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path sits under a 0700 folder
    write_tree(root, {"model/service.py": HANDLER, "model/w.bin": "w"})
    for p in [root, *root.rglob("*")]:
        os.chmod(p, 0o777 if p.is_dir() else 0o666)
    if _as_nobody(["--tool-version"], root).returncode != 0:
        pytest.skip("the unprivileged user cannot run this checkout's Python")
    args = ["--model-name", "m", *M, "--handler", "service"]
    if case == "unreadable-model-path":
        os.chmod(root / "model", 0o000)
        message = "cannot be read (Permission denied)"
    elif case == "unreadable-file":
        os.chmod(root / "model/w.bin", 0o000)
        message = "cannot read"
    else:
        (root / "ro").mkdir(mode=0o555)
        os.chmod(root / "ro", 0o555)
        args += ["--export-path", "ro"]
        message = "cannot write"
    before = all_files(root)
    r = _as_nobody(args, root)
    os.chmod(root / "model", 0o777)
    try:
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert all_files(root) == before
    finally:
        shutil.rmtree(root)


def test_model_path_under_a_folder_we_cannot_enter(tmp_path: Path):
    """pytest's own tmp_path is 0700: an unprivileged user cannot even stat the model."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop to an unprivileged user")
    write_tree(tmp_path, {"model/service.py": HANDLER})
    r = _as_nobody(["--model-name", "m", "--model-path", str(tmp_path / "model"), "--handler",
                    "service", "--export-path", "/tmp"], Path("/tmp"))
    assert r.returncode == 1 and "cannot be read (Permission denied)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
