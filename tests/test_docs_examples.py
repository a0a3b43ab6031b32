"""The README's examples and the Python API page's example, run as a reader would run them.

Checked here, on a copy of the repository set up the README's way (its first command: the
venv, then `.venv/bin/doit archive` building model-store/*.mar, and a second run with
nothing to do): every ```bash block of README.md after that one and of docs/cli.md, run
command by command in sequence with the venv's commands first on PATH; the README's "own
dodo" example (as a real doit run), its `task_publish` dodo against a real S3 server, and
the ```python block of docs/python-api.md. README's toml and dodo snippets for `doit
archive` are this repository's own pyproject.toml and dodo.py, which that first command
builds. docs/doit.md's commands need a project with a store or TorchServe;
tests/test_doit_*.py, tests/test_s3_store.py and tests/test_torchserve.py run them on
projects of their own.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tree

ROOT = Path(__file__).resolve().parents[1]


def blocks(page: Path, lang: str):
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), re.S)


def _copy_examples(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")


def _env():
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, env=_env(),
                       timeout=120)
    assert r.returncode == 0, (command, r.stdout, r.stderr)
    return r


def _commands(block: str):
    for command in block.replace("\\\n", " ").splitlines():
        command = command.split("  #")[0].strip()
        if command and not command.startswith("#"):
            yield command


def _clone(dst: Path) -> Path:
    """What `git clone` of this repository gives: its tracked (and new, not ignored) files
    (outside a git checkout: everything but what .gitignore names)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        shutil.copytree(ROOT, dst, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "model-store", ".doit.db*", ".mar_tasks.*", "*.egg-info",
            "__pycache__", ".pytest_cache", "build", "work"))
        return dst
    files = listed.stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    return dst


def _archives(clone: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (clone / "model-store").iterdir()}


@pytest.fixture
def set_up_clone(tmp_path: Path) -> Path:
    """A clone after the README's first command. Creating the venv and installing into it
    is what the test run itself stands on: the clone's .venv is that venv; the rest of the
    command (`.venv/bin/doit archive`) runs as written."""
    clone = _clone(tmp_path / "clone")
    (clone / ".venv").symlink_to(sys.prefix)
    first = blocks(ROOT / "README.md", "bash")[0].splitlines()[0].split("  #")[0]
    steps = [c.strip() for c in first.split("&&")]
    assert steps[0].startswith("python3 -m venv .venv") and "pip install -e" in steps[1], steps
    for step in steps[2:]:
        _run(step, clone)
    return clone


def test_readme_first_command_builds_the_examples_then_has_nothing_to_do(set_up_clone: Path):
    built = _archives(set_up_clone)
    assert sorted(built) == ["mnist.mar", "squeezenet_v1.1.mar"]
    r = _run(".venv/bin/doit archive", set_up_clone)  # "run .venv/bin/doit archive again"
    assert sorted(re.findall(r"^-- (archive:\S+)", r.stdout, re.M)) == [
        "archive:mnist", "archive:squeezenet_v1.1"], r.stdout
    assert not re.search(r"^\.  ", r.stdout, re.M), r.stdout
    assert _archives(set_up_clone) == built  # not rewritten either


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md"])
def test_shell_examples(set_up_clone: Path, page: str):
    """Every command of the page, in sequence, on a clone set up the README's way."""
    before = set(os.listdir(set_up_clone))
    shell = blocks(ROOT / page, "bash")
    if page == "README.md":
        assert len(shell) >= 2 and "pip install" in shell[0]
        shell = shell[1:]
    ran = [_run(command, set_up_clone) for block in shell for command in _commands(block)]
    assert ran
    assert set(os.listdir(set_up_clone)) == before  # outputs go to model-store/, not the root
    assert sorted(_archives(set_up_clone)) == ["mnist.mar", "squeezenet_v1.1.mar"]


def test_readme_publish_dodo_gives_doit_publish(s3_server, tmp_path: Path):
    """Where the README introduces publishing, its dodo snippet makes `doit publish` a task."""
    from s3_server import BUCKET
    code = next(b for b in blocks(ROOT / "README.md", "python") if "task_publish" in b)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "dodo.py").write_text(code)
    env = {**s3_server.env(), "MAR_TASKS_PUBLISH_URL": f"s3://{BUCKET}/readme-{os.getpid()}/model-store"}
    for command in ("archive", "publish"):
        r = subprocess.run([sys.executable, "-m", "doit", command], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    assert "mar_tasks publish: 2 published" in r.stderr, r.stderr


def test_benchmark_command_names_the_extra_it_needs():
    """docs/performance.md gives `python benchmarks/run.py`; what it imports beyond the
    project's own dependencies is the `bench` extra, which must be said where the command is."""
    import tomllib
    bench = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["bench"]
    paragraph = next(p for p in (ROOT / "docs/performance.md").read_text().split("\n\n")
                     if "python benchmarks/run.py" in p)
    assert "'.[bench]'" in paragraph, paragraph
    imported = set(re.findall(r"^\s*(?:import|from) (\w+)", (ROOT / "benchmarks/run.py").read_text(), re.M))
    assert "numpy" in imported and any(d.startswith("numpy") for d in bench)


def test_readme_own_dodo_example(tmp_path: Path):
    code = next(b for b in blocks(ROOT / "README.md", "python") if "archive_task" in b)
    write_tree(tmp_path, {"models/resnet/model.pt": b"weights", "dodo.py": code})
    (tmp_path / "deployed").mkdir()
    # the README deploys to a server's folder; here that folder is ./deployed
    (tmp_path / "dodo.py").write_text(code.replace("/srv/model-store/", "deployed/"))
    r = subprocess.run([sys.executable, "-m", "doit", "deploy"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "deployed/resnet.mar").read_bytes() == (tmp_path / "dist/resnet.mar").read_bytes()


def test_readme_generated_models_example(tmp_path: Path):
    """The README's create_after dodo: the models exist only once `download` ran."""
    code = next(b for b in blocks(ROOT / "README.md", "python") if "create_after" in b)
    fetch = ("import os, sys\n"
             "for m in ('a', 'b'):\n"
             "    os.makedirs(os.path.join(sys.argv[1], m), exist_ok=True)\n"
             "    open(os.path.join(sys.argv[1], m, 'service.py'), 'w').write("
             "'def handle(data, context):\\n    return data\\n')\n"
             "open(os.path.join(sys.argv[1], '.done'), 'w').close()\n")
    write_tree(tmp_path, {"dodo.py": code, "fetch_models.py": fetch, "pyproject.toml":
                          '[tool.mar_tasks.defaults]\nexport-path = "store"\n'
                          '[tool.mar_tasks.model-dirs."downloaded"]\nhandler = "service:handle"\n'})
    r = subprocess.run([sys.executable, "-m", "doit", "archive"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path / "store")) == ["a.mar", "b.mar"]
    assert (tmp_path / ".mar_tasks.lock").read_text() != ""


def test_python_api_example(tmp_path: Path):
    _copy_examples(tmp_path)
    (code,) = blocks(ROOT / "docs/python-api.md", "python")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "invalid model name 'bad name'" in r.stdout
    assert (tmp_path / "model-store/mnist.mar").is_file()


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md", "docs/formats.md", "docs/doit.md",
                                  "docs/performance.md", "docs/python-api.md"])
def test_links_between_pages_resolve(page: str):
    text = (ROOT / page).read_text()
    for target in re.findall(r"\]\(([^)#]+\.md)", text):
        assert (ROOT / page).parent.joinpath(target).resolve().is_file(), (page, target)
    if page == "README.md":
        assert len(text.splitlines()) < 150
