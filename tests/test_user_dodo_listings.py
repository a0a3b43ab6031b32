"""archive_task() in a dodo of your own: its listings are remembered too (issue 18, item 8),
so a no-op walks no model folder, and no change to what an archive holds hides behind one."""
from __future__ import annotations

import os
import textwrap
import time
import zipfile
from pathlib import Path

from conftest import HANDLER, write_tree
from doit_helpers import Run, doit
from mar_tasks.tasks import remembered_listings

AGE = remembered_listings.RACY_NS / 1e9 + 0.2

# With NO_WALK set, any walk of a model folder fails the load (doit exits 3).
DODO = textwrap.dedent('''
    import os
    from mar_tasks import archive_task, task_archive  # noqa: F401
    if os.environ.get("NO_WALK"):
        import mar_tasks.plan.selection as selection
        def no_walk(*a, **k):
            raise AssertionError("a remembered listing was walked again")
        selection.select_files = no_walk

    def task_models():
        for name in sorted(os.listdir("zoo")):
            yield archive_task(name, "service:handle", f"zoo/{name}", export_path="dist",
                               version=os.environ.get("VERSION", "1.0"))
    ''')


def user_project(root: Path, with_pyproject: bool = False) -> Path:
    for i in range(3):
        write_tree(root / "zoo" / f"m{i}", {"service.py": HANDLER, "weights.bin": bytes([i]) * 5000,
                                            "labels/l.txt": f"{i}\n"})
    dodo = DODO if with_pyproject else DODO.replace(", task_archive  # noqa: F401", "")
    (root / "dodo.py").write_text(dodo)
    if with_pyproject:
        write_tree(root / "other", {"service.py": HANDLER, "w.bin": b"o"})
        (root / "pyproject.toml").write_text(textwrap.dedent("""
            [tool.mar_tasks.models.other]
            model-path = "other"
            handler = "service:handle"
            export-path = "store"
            """))
    time.sleep(AGE)  # folders older than the racy margin, as a real project's are
    return root


def run(project: Path, *args: str, **env: str) -> Run:
    r = doit(project, *args, env={**os.environ, **env})
    assert r.rc == 0, r.out
    return r


def built(r: Run) -> set:
    return {line[len(".  models:"):] for line in r.out.splitlines() if line.startswith(".  models:")}


def test_a_noop_walks_no_model_folder(tmp_path: Path):
    p = user_project(tmp_path / "p")
    assert built(run(p)) == {"m0", "m1", "m2"}
    assert built(run(p, NO_WALK="1")) == set()
    assert (p / ".mar_tasks.listings").is_file() and (p / ".mar_tasks.lock").is_file()
    # Another argument is another call: walked, then remembered under its own key.
    assert built(run(p, VERSION="2.0")) == {"m0", "m1", "m2"}
    assert built(run(p, VERSION="2.0", NO_WALK="1")) == set()


def test_what_a_remembered_listing_holds_still_changes_the_archive(tmp_path: Path):
    p = user_project(tmp_path / "p")
    run(p)
    run(p, NO_WALK="1")
    (p / "zoo/m1/new.txt").write_text("new")  # the folder's stamp moves: walked again
    assert built(run(p)) == {"m1"}
    with zipfile.ZipFile(p / "dist/m1.mar") as z:
        assert "new.txt" in z.namelist()
    time.sleep(AGE)
    assert built(run(p)) == set()  # (m1's folder is no longer racily new: remembered again)
    (p / "zoo/m2/weights.bin").write_bytes(b"other")  # a file's content: no folder moves
    assert built(run(p)) == {"m2"}  # (its listing was remembered; the build lists afresh)
    assert built(run(p, NO_WALK="1")) == set()


def test_pyproject_models_and_calls_share_the_file(tmp_path: Path):
    """A dodo with both: each save keeps the other kind's records."""
    p = user_project(tmp_path / "p", with_pyproject=True)
    r = run(p)
    assert built(r) == {"m0", "m1", "m2"} and ".  archive:other" in r.out
    r = run(p, NO_WALK="1")
    assert built(r) == set() and "-- archive:other" in r.out
    r = run(p, NO_WALK="1")
    assert built(r) == set() and "-- archive:other" in r.out


def test_force_is_the_clis_f_and_does_not_rebuild_every_run(tmp_path: Path):
    """archive_task(force=True) may replace a file mar_tasks did not write (the CLI's -f);
    it used to rebuild on every run."""
    p = user_project(tmp_path / "p")
    (p / "dist").mkdir()
    (p / "dist/m0.mar").write_bytes(b"not ours")
    (p / "dodo.py").write_text((p / "dodo.py").read_text().replace(
        'version=os.environ.get("VERSION", "1.0"))', 'version="1.0", force=name == "m0")'))
    assert built(run(p)) == {"m0", "m1", "m2"}
    assert zipfile.is_zipfile(p / "dist/m0.mar")
    assert built(run(p)) == set()
    assert built(run(p, NO_WALK="1")) == set()


def test_an_argument_archive_task_does_not_take_fails_the_load_with_one_line(tmp_path: Path):
    p = user_project(tmp_path / "p")
    (p / "dodo.py").write_text((p / "dodo.py").read_text().replace('version=', 'colour="red", version='))
    r = doit(p, check=False)
    assert r.rc != 0 and "archive_task('m0')" in r.out and "colour" in r.out, r.out


def test_tasks_from_remembered_calls_build_in_spawned_workers(tmp_path: Path):
    """A task made from a remembered listing carries the call's arguments (CallSpec), which
    a spawned worker gets by pickle and turns into options there."""
    from doit_helpers import doit_spawned
    p = user_project(tmp_path / "p")
    run(p)
    (p / "zoo/m0/weights.bin").write_bytes(b"changed")
    (p / "zoo/m1/weights.bin").write_bytes(b"changed too")
    r = doit_spawned(p, "-n", "2", "-P", "process")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("m0", "m1"):
        with zipfile.ZipFile(p / "dist" / f"{name}.mar") as z:
            assert z.read("weights.bin").startswith(b"changed")
    assert built(run(p, NO_WALK="1")) == set()
