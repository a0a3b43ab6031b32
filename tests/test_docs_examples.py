"""The README's examples and the Python API page's example, run as a reader would run them.

Checked here: every ```bash block of README.md after the set-up one and of docs/cli.md (run
command by command in a copy of examples/, with the venv's commands first on PATH), the
README's "own dodo" example (as a real doit run), and the ```python block of
docs/python-api.md. README's toml and dodo snippets for `doit archive` are this
repository's own pyproject.toml and dodo.py, which the README's set-up command builds.
docs/doit.md's commands need a project with a store or TorchServe; tests/test_doit_*.py and
tests/test_s3_store.py run the same commands on projects of their own.
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


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md"])
def test_shell_examples(tmp_path: Path, page: str):
    _copy_examples(tmp_path)
    shell = blocks(ROOT / page, "bash")
    if page == "README.md":
        assert len(shell) >= 2 and "pip install" in shell[0]
        shell = shell[1:]
    for block in shell:
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if not command or command.startswith("#"):
                continue
            r = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                               env=_env(), timeout=120)
            assert r.returncode == 0, (command, r.stdout, r.stderr)
    assert list(tmp_path.glob("**/squeezenet_v1.1.mar")) or list(tmp_path.glob("**/mnist.mar"))


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
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    r = subprocess.run([sys.executable, "-m", "doit", "archive"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
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
