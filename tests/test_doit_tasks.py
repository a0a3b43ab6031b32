"""archive tasks run by real doit: what rebuilds, what does not, force, clean, parallel."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import HANDLER, write_tree
from doit_helpers import doit, doit_spawned, make_project, saved_states

ALL = {"m0", "m1", "m2"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_first_run_builds_all_second_none(project: Path):
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == ALL, r.out
    assert sorted(os.listdir(project / "store")) == ["m0.mar", "m1.mar", "m2.mar"]
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == set() and r.skipped == ALL, r.out


def test_touch_rebuilds_nothing_and_is_remembered(project: Path):
    doit(project, "archive")
    later = time.time() + 100
    for p in (project / "zoo").rglob("*"):
        if p.is_file():
            os.utime(p, (later, later))
    r = doit(project, "archive")
    assert r.built == set() and r.skipped == ALL, r.out
    # The new mtimes are now in doit's state: the next run has nothing to hash.
    saved = saved_states(project, "archive:m1")
    assert saved and all(abs(state[0] - later) < 1e-3 for state in saved.values())


def test_content_change_rebuilds_only_that_model(project: Path):
    doit(project, "archive")
    before = {n: (project / "store" / f"{n}.mar").read_bytes() for n in ALL}
    (project / "zoo/m1/weights.bin").write_bytes(b"new weights")
    r = doit(project, "archive")
    assert r.built == {"m1"}, r.out
    assert (project / "store/m0.mar").read_bytes() == before["m0"]
    assert (project / "store/m1.mar").read_bytes() != before["m1"]


def test_adding_and_removing_files(project: Path):
    doit(project, "archive")
    (project / "zoo/m0/new.txt").write_text("n")
    assert doit(project, "archive").built == {"m0"}
    (project / "zoo/m0/new.txt").unlink()
    assert doit(project, "archive").built == {"m0"}
    assert doit(project, "archive").built == set()


@pytest.mark.parametrize("excluded", [".hidden", "__pycache__/service.cpython-311.pyc", "x.pyc",
                                      ".DS_Store", "labels/.swp", "MANIFEST.json"])
def test_excluded_files_never_rebuild(project: Path, excluded: str):
    doit(project, "archive")
    path = project / "zoo/m2" / excluded
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a")
    assert doit(project, "archive").built == set()
    path.write_text("changed")
    assert doit(project, "archive").built == set()
    path.unlink()
    assert doit(project, "archive").built == set()


@pytest.mark.parametrize("option", ['handler = "service"', 'runtime = "python3"',
                                    'archive-format = "tgz"', 'version = "2.0"',
                                    'compression = "store"', 'export-path = "other"'])
def test_changing_an_option_rebuilds(project: Path, option: str):
    assert doit(project, "archive").built == ALL
    toml = project / "pyproject.toml"
    toml.write_text(toml.read_text().replace('handler = "service:handle"',
                                             'handler = "service:handle"\n' + option)
                    if not option.startswith("handler") else
                    toml.read_text().replace('handler = "service:handle"', option))
    r = doit(project, "archive")
    assert r.built == ALL, r.out


def test_deleted_or_hand_modified_archive_is_rebuilt(project: Path):
    doit(project, "archive")
    good = (project / "store/m0.mar").read_bytes()
    (project / "store/m0.mar").unlink()
    assert doit(project, "archive").built == {"m0"}
    with open(project / "store/m0.mar", "ab") as f:
        f.write(b"junk")
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == {"m0"}, r.out
    assert (project / "store/m0.mar").read_bytes() == good


def test_foreign_file_needs_force(project: Path):
    (project / "store").mkdir()
    (project / "store/m1.mar").write_text("hand made")
    r = doit(project, "archive", check=False)
    assert r.rc != 0 and "m1.mar already exists" in r.out and "--force" in r.out
    assert "Traceback" not in r.out
    assert (project / "store/m1.mar").read_text() == "hand made"
    r = doit(project, "archive", "--force")
    assert r.rc == 0 and r.built == ALL, r.out
    assert (project / "store/m1.mar").read_bytes()[:2] == b"PK"
    # --force rebuilds unconditionally
    assert doit(project, "archive", "--force").built == ALL


def test_force_in_config_means_the_clis_f(tmp_path: Path):
    """force = true lets that model replace a file mar_tasks did not write, like -f; it does
    not rebuild on every run (the model becomes up to date like any other)."""
    project = make_project(tmp_path / "p", extra_toml=textwrap.dedent("""
        [tool.mar_tasks.models.solo]
        model-path = "zoo/m0"
        handler = "service"
        force = true
        """))
    (project / "store").mkdir()
    (project / "store/solo.mar").write_text("foreign")
    r = doit(project, "archive:solo")
    assert r.rc == 0 and r.built == {"solo"}, r.out
    r = doit(project, "archive")
    assert r.rc == 0 and "solo" not in r.built and r.built == ALL, r.out
    assert doit(project, "archive").built == set()  # a no-op, forced model included


def test_force_for_one_model_on_the_command_line(project: Path):
    assert doit(project, "archive").built == ALL
    (project / "store/m1.mar").unlink()
    (project / "store/m1.mar").write_text("foreign")
    r = doit(project, "archive:m1", check=False)
    assert r.rc != 0 and "already exists" in r.out
    r = doit(project, "archive:m1", "--force")
    assert r.rc == 0 and r.built == {"m1"}, r.out
    assert (project / "store/m1.mar").read_bytes()[:2] == b"PK"
    assert doit(project, "archive:m1", "--force").built == {"m1"}  # rebuilds, like --force
    assert doit(project, "archive").built == set()


def test_own_archives_without_database_are_replaced(project: Path):
    """A fresh clone or CI cache restore: archives present, no .doit.db."""
    doit(project, "archive")
    for p in project.glob(".doit.db*"):
        p.unlink()
    r = doit(project, "archive")
    assert r.rc == 0 and r.built == ALL, r.out


def test_clean_removes_only_our_outputs_and_forget_rebuilds(project: Path):
    doit(project, "archive")
    (project / "store/notes.txt").write_text("keep me")
    r = doit(project, "clean", "archive")
    assert r.rc == 0, r.out
    assert sorted(os.listdir(project / "store")) == ["notes.txt"]
    assert not (project / ".mar_tasks.builds").exists()  # the build records went with them
    doit(project, "archive")
    assert doit(project, "forget", "archive").rc == 0
    assert doit(project, "archive").built == ALL


def test_clean_no_archive_folder(tmp_path: Path):
    project = make_project(tmp_path / "p")
    toml = project / "pyproject.toml"
    toml.write_text(toml.read_text().replace('export-path = "store"',
                                             'export-path = "store"\narchive-format = "no-archive"'))
    assert doit(project, "archive").built == ALL
    assert (project / "store/m0/MAR-INF/MANIFEST.json").is_file()
    (project / "store/m0/service.py").write_text("edited by hand")
    assert doit(project, "archive").built == {"m0"}
    assert doit(project, "clean", "archive").rc == 0
    assert os.listdir(project / "store") == []


@pytest.mark.parametrize("mode", [["-n", "2", "-P", "process"], ["-n", "2", "-P", "thread"]])
def test_parallel_builds(project: Path, tmp_path: Path, mode):
    r = doit(project, *mode, "archive")
    assert r.rc == 0 and r.built == ALL, r.out
    ref = make_project(tmp_path / "serial")
    doit(ref, "archive")
    for n in ALL:
        assert (project / f"store/{n}.mar").read_bytes() == (ref / f"store/{n}.mar").read_bytes()


def test_parallel_processes_under_spawn(project: Path):
    r = doit_spawned(project, "-n", "2", "-P", "process", "archive")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.listdir(project / "store")) == ["m0.mar", "m1.mar", "m2.mar"]


@pytest.mark.parametrize("args, expected", [
    ([], 1), (["-n", "1"], 1), (["-n", "3", "-P", "process"], 3), (["-n", "2", "-P", "thread"], 2),
    (["spawn", "-n", "2", "-P", "process"], 2)])
def test_builds_know_how_many_run_at_once(tmp_path: Path, args, expected):
    """Each build's deflate threads are the cores shared out among doit's concurrent tasks."""
    (tmp_path / "dodo.py").write_text(textwrap.dedent("""
        from mar_tasks.tasks.doit_private import builds_at_once

        def record(name):
            with open(name, "w") as f:
                f.write(str(builds_at_once()))

        def task_probe():
            for i in range(4):
                yield {"name": str(i), "actions": [(record, [f"probe{i}.txt"])]}
        """))
    start = "spawn" if args[:1] == ["spawn"] else "fork"
    code = textwrap.dedent(f"""
        import multiprocessing, sys
        multiprocessing.set_start_method({start!r}, force=True)
        from doit.doit_cmd import DoitMain
        from doit.cmd_base import ModuleTaskLoader
        import dodo
        sys.exit(DoitMain(ModuleTaskLoader(dodo)).run({[a for a in args if a != "spawn"] + ["probe"]!r}))
        """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(tmp_path / f"probe{i}.txt").read_text() for i in range(4)] == [str(expected)] * 4


def test_one_failing_model_does_not_stop_the_others(project: Path):
    (project / "zoo/m1/service.py").write_text("def other(): pass\n")
    shutil.rmtree(project / "zoo/m2/labels")
    (project / "zoo/m2/service.py").unlink()
    r = doit(project, "--continue", "archive", check=False)
    assert r.rc != 0
    assert (project / "store/m0.mar").is_file()
    assert not (project / "store/m1.mar").exists() and not (project / "store/m2.mar").exists()
    assert "m1: handler function 'handle' is not defined in service.py" in r.out
    assert "m2: handler module 'service' not found" in r.out
    assert "Traceback" not in r.out


def test_archive_task_in_another_projects_dodo(tmp_path: Path):
    write_tree(tmp_path, {"models/a/service.py": HANDLER, "models/a/w.bin": "w"})
    (tmp_path / "dodo.py").write_text(textwrap.dedent("""
        from pathlib import Path
        from mar_tasks import archive_task

        def task_models():
            '''my own archive tasks'''
            yield archive_task(model_name="a", model_path=Path("models/a"), handler="service",
                               export_path="dist", version="3.1")
            yield archive_task("b", "service", "models/a", export_path=Path("dist"),
                               archive_format="tgz")
        """))
    r = subprocess.run([sys.executable, "-m", "doit", "models"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "models:a" in r.stdout and "models:b" in r.stdout
    assert (tmp_path / "dist/a.mar").is_file() and (tmp_path / "dist/b.tar.gz").is_file()


@pytest.mark.parametrize("toml,message", [
    ('[tool.mar_tasks.models.a]\nmodel-path = "zoo/m0"\nhandlr = "service"\n', "unknown key tool.mar_tasks.models.a.handlr"),
    ('[tool.mar_tasks.models.a]\nmodel-path = 3\nhandler = "service"\n', "tool.mar_tasks.models.a.model-path must be a string"),
    ('[tool.mar_tasks.models.a]\nmodel-path = "zoo/m0"\n', "tool.mar_tasks.models.a has no handler"),
    ('[tool.mar_tasks.models.a]\nmodel-path = "zoo/m0"\nhandler = "s"\nversion = 2\n', "version must be a string"),
    ('[tool.mar_tasks]\nmodel-dirs = ["models"]\n', "tool.mar_tasks.model-dirs must be a table"),
    ('[tool.mar_tasks]\ndefaults = 3\n', "tool.mar_tasks.defaults must be a table"),
    ('[tool.mar_tasks.publish]\nurl = "https://x/y"\n', "publish url 'https://x/y' is not an s3://BUCKET/PREFIX address"),
    ('[tool.mar_tasks.defaults]\narchive-format = "zip"\n', "archive-format = 'zip' is not allowed; use one of default, tgz"),
    ('[tool.mar_tasks.modles]\n', "unknown key tool.mar_tasks.modles"),
    ('[tool.mar_tasks.models.a]\nmodel-path = "zoo/m0"\nhandler = "s"\nforce = "yes"\n', "force must be true or false"),
])
def test_malformed_config_is_one_line_naming_file_and_key(tmp_path: Path, toml: str, message: str):
    project = make_project(tmp_path / "p", models=1)
    (project / "pyproject.toml").write_text(toml)
    r = doit(project, "archive", check=False)
    assert r.rc != 0 and message in r.out and "pyproject.toml" in r.out, r.out
    assert "Traceback" not in r.out


def test_a_retired_cache_table_is_one_warning_and_the_archives_build(tmp_path: Path):
    project = make_project(tmp_path / "p", models=2, extra_toml='\n[tool.mar_tasks.cache]\nurl = "s3://b/c"\nmode = "read"\n')
    r = doit(project, "archive", env={**os.environ, "MAR_TASKS_CACHE_URL": "s3://b/c"})
    assert r.rc == 0 and r.built == {"m0", "m1"}, r.out
    assert r.out.count("[tool.mar_tasks.cache] was removed") == 1, r.out
    assert r.out.count("MAR_TASKS_CACHE_URL is set but the shared build cache was removed") == 1, r.out
    assert "Traceback" not in r.out


def test_repo_dodo_lists_archive_with_doc():
    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0 and "archive" in r.stdout and "Build the model archives" in r.stdout


def test_bad_model_name_in_config_fails_only_that_task(tmp_path: Path):
    project = make_project(tmp_path / "p", models=1, extra_toml=textwrap.dedent("""
        [tool.mar_tasks.models."bad name"]
        model-path = "zoo/m0"
        handler = "service"
        """))
    r = doit(project, "--continue", "archive", check=False)
    assert r.rc != 0 and "invalid model name 'bad name'" in r.out and "Traceback" not in r.out
    assert (project / "store/m0.mar").is_file()
