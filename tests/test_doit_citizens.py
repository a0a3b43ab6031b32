"""Archive tasks next to a user's own tasks, in a user's own dodo: real doit, subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import HANDLER, write_tree
from doit_helpers import doit, make_project, saved_states

ARCHIVE = 'archive_task("m", "service:handle", "m", export_path="dist")'
DEPLOY = textwrap.dedent('''
    def task_deploy():
        return {"file_dep": ["dist/m.mar"], "actions": ["cp dist/m.mar deployed.mar"]}
    ''')
MODELS = textwrap.dedent(f'''
    def task_models():
        yield {ARCHIVE}
    ''')


def user_project(root: Path, deploy_first: bool) -> Path:
    write_tree(root / "m", {"service.py": HANDLER, "w.bin": b"1" * 1000})
    body = DEPLOY + MODELS if deploy_first else MODELS + DEPLOY
    (root / "dodo.py").write_text("from mar_tasks import archive_task\n" + body)
    return root


@pytest.mark.parametrize("deploy_first", [True, False], ids=["user-task-first", "user-task-last"])
def test_user_task_depending_on_an_archive(tmp_path: Path, deploy_first: bool):
    root = user_project(tmp_path, deploy_first)
    r = doit(root, "deploy")  # a fresh checkout: the archive is built first, implicitly
    assert r.rc == 0 and ".  models:m" in r.out and ".  deploy" in r.out, r.out
    assert (root / "deployed.mar").read_bytes() == (root / "dist/m.mar").read_bytes()
    (root / "m/w.bin").write_bytes(b"2" * 1000)
    r = doit(root, "deploy")  # the run that rebuilds the archive also deploys it
    assert ".  models:m" in r.out and ".  deploy" in r.out, r.out
    assert (root / "deployed.mar").read_bytes() == (root / "dist/m.mar").read_bytes()
    r = doit(root, "deploy")
    assert "-- models:m" in r.out and "-- deploy" in r.out, r.out


def test_run_an_archive_by_its_target(tmp_path: Path):
    root = user_project(tmp_path, True)
    r = doit(root, "dist/m.mar")
    assert r.rc == 0 and (root / "dist/m.mar").is_file(), r.out


def test_missing_model_dirs_folder_is_no_models_yet(tmp_path: Path):
    """downloaded/ is made by the user's own task: listing, cleaning and the download work
    before it exists; with @create_after the models it brings build in the same run."""
    write_tree(tmp_path / "src/a", {"service.py": HANDLER})
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.mar_tasks.defaults]
        export-path = "store"
        handler = "service"
        [tool.mar_tasks.model-dirs."downloaded"]
        '''))
    (tmp_path / "dodo.py").write_text(textwrap.dedent('''
        from doit import create_after
        from mar_tasks import project_tasks

        def task_download():
            return {"actions": ["mkdir -p downloaded && cp -r src/a downloaded/"],
                    "targets": ["downloaded/a/service.py"]}

        @create_after(executed="download")
        def task_archive():
            """archives of the downloaded models"""
            yield from project_tasks()
        '''))
    for args in (["list"], ["clean"], ["info", "archive"]):
        r = doit(tmp_path, *args, check=False)  # (doit info exits 1 for a task that is not up to date)
        assert r.rc in ((0, 1) if args[0] == "info" else (0,)) and "Traceback" not in r.out, r.out
    r = doit(tmp_path, "download", "archive")
    assert r.rc == 0 and (tmp_path / "store/a.mar").is_file(), r.out
    # without create_after the folder is simply empty of models until it exists
    (tmp_path / "dodo.py").write_text("from mar_tasks import task_archive  # noqa\n")
    import shutil
    shutil.rmtree(tmp_path / "downloaded")
    r = doit(tmp_path, "info", "archive", check=False)
    assert "no models from downloaded/ yet" in r.out and "Traceback" not in r.out, r.out


def test_one_bad_model_table_fails_only_that_task(tmp_path: Path):
    project = make_project(tmp_path, models=2, extra_toml=textwrap.dedent('''
        [tool.mar_tasks.models.zipper]
        model-path = "zoo/m0"
        handler = "service"
        archive-format = "zip"
        [tool.mar_tasks.models.typo]
        model-path = "zoo/m0"
        handler = "service"
        compresion = "store"
        '''))
    r = doit(project, "list", "--all")
    assert r.rc == 0 and "zipper" in r.out and "Traceback" not in r.out, r.out
    r = doit(project, "--continue", "archive", check=False)
    assert r.rc != 0 and "Traceback" not in r.out
    assert "tool.mar_tasks.models.zipper.archive-format = 'zip' is not allowed; use one of default, tgz, no-archive, zip-store" in r.out
    assert "unknown key tool.mar_tasks.models.typo.compresion" in r.out and "pyproject.toml" in r.out
    assert (project / "store/m0.mar").is_file() and (project / "store/m1.mar").is_file()


def test_archive_task_with_a_bad_value_fails_alone(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": HANDLER})
    (tmp_path / "dodo.py").write_text(textwrap.dedent('''
        from mar_tasks import archive_task
        def task_models():
            yield archive_task("bad", "service", "m", archive_format="zip")
            yield archive_task("good", "service", "m")
        '''))
    r = doit(tmp_path, "list")
    assert r.rc == 0 and "Traceback" not in r.out, r.out
    r = doit(tmp_path, "--continue", check=False)
    assert r.rc != 0 and "mar_tasks: bad: unknown archive format 'zip'; choose one of" in r.out, r.out
    assert (tmp_path / "good.mar").is_file() and "Traceback" not in r.out


def test_another_checker_does_not_break_the_next_run(tmp_path: Path):
    project = make_project(tmp_path)
    r = doit(project, "--check_file_uptodate", "timestamp", "archive")
    assert r.rc == 0, r.out
    for _ in range(2):
        r = doit(project, "archive")
        assert r.rc == 0 and "Traceback" not in r.out, r.out
    (project / "zoo/m0/weights.bin").write_bytes(b"x" * 5000)
    r = doit(project, "--check_file_uptodate", "timestamp", "archive")
    assert r.rc == 0 and "m0" in r.built, r.out
    assert doit(project, "archive").rc == 0


def test_input_rewritten_as_the_archive_appears_is_rebuilt_next_run(tmp_path: Path):
    """A watcher rewrites an input (same size, new mtime) the moment the archive is published,
    before doit records the inputs: the next run must rebuild, every time."""
    project = make_project(tmp_path, models=1)
    target = project / "store/m0.mar"
    victim = project / "zoo/m0/weights.bin"
    for trial in range(6):
        content = bytes([65 + trial]) * 5000
        stop = threading.Event()

        def watch(expected_mtime):
            while not stop.is_set():
                try:
                    if target.stat().st_mtime_ns != expected_mtime:
                        victim.write_bytes(content)
                        st = victim.stat()
                        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**6))
                        return
                except FileNotFoundError:
                    pass
                time.sleep(0.0005)

        before = target.stat().st_mtime_ns if target.exists() else None
        victim.write_bytes(bytes([97 + trial]) * 5000)  # the change that triggers a build
        t = threading.Thread(target=watch, args=(before,))
        t.start()
        doit(project, "archive")
        stop.set()
        t.join()
        r = doit(project, "archive")  # must catch up with what the watcher wrote
        assert r.rc == 0, r.out
        import zipfile
        with zipfile.ZipFile(target) as z:
            assert z.read("weights.bin") == victim.read_bytes(), f"trial {trial}: stale archive"


def test_two_runs_at_once_never_corrupt_doits_state(tmp_path: Path):
    project = make_project(tmp_path, models=12)
    for round_ in range(4):
        for i in range(12):
            (project / f"zoo/m{i}/weights.bin").write_bytes(bytes([round_ + 10 * i]) * 20_000)
        procs = [subprocess.Popen([sys.executable, "-m", "doit", "archive"], cwd=project,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        r = doit(project, "archive")
        assert r.rc == 0 and r.built == set() and "Traceback" not in r.out, (r.out, outs)
    assert saved_states(project, "archive:m0")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_workers_importing_the_dodo_do_not_wait_for_their_parents_lock(tmp_path: Path, method):
    """Under -P process with spawn, each worker imports the dodo again (it holds a task of
    the user's); that import asks for the project lock the parent holds: it must not wait."""
    project = make_project(tmp_path, models=2)
    (project / "dodo.py").write_text(textwrap.dedent('''
        from mar_tasks import task_archive  # noqa: F401

        def _mine():
            open("mine.txt", "w").write("ok")

        def task_mine():
            return {"actions": [(_mine,)], "targets": ["mine.txt"], "uptodate": [False]}
        '''))
    (project / "run.py").write_text(textwrap.dedent('''
        import multiprocessing, sys
        from doit.cmd_base import ModuleTaskLoader
        from doit.doit_cmd import DoitMain

        if __name__ == "__main__":
            multiprocessing.set_start_method(sys.argv[1], force=True)
            import dodo
            sys.exit(DoitMain(ModuleTaskLoader(dodo)).run(["-n", "2", "-P", "process"]))
        '''))
    r = subprocess.run([sys.executable, "run.py", method], cwd=project, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(project)}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project / "mine.txt").read_text() == "ok"
    assert sorted(os.listdir(project / "store")) == ["m0.mar", "m1.mar"]
    assert "waiting for it to finish" not in r.stderr
