"""doit's private API, as mar_tasks.tasks.doit_private uses it: fails loudly when doit changes.

Run against the oldest and newest doit that pyproject.toml admits (see .ci/run).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import doit
from doit.dependency import DbmDB, Dependency, MD5Checker

from mar_tasks.tasks import doit_private as doit_state
def test_states_and_values_round_trip_through_doits_db(tmp_path: Path):
    dep = Dependency(DbmDB, str(tmp_path / "db"), checker_cls=MD5Checker)
    dep._set("t", "checker:", "MD5Checker")
    doit_state.save_state(dep, "t", "a.txt", (1.5, 3, "abc"))
    doit_state.save_values(dep, "t", {"inputs": "d"})
    dep.close()
    dep = Dependency(DbmDB, str(tmp_path / "db"), checker_cls=MD5Checker)
    assert list(doit_state.saved_state(dep, "t", "a.txt")) == [1.5, 3, "abc"]
    assert doit_state.saved_checker(dep, "t") == "MD5Checker"
    assert dep.get_values("t") == {"inputs": "d"}  # where doit itself reads values from
    dep.close()


def test_builds_at_once_finds_doits_runner(tmp_path: Path):
    (tmp_path / "dodo.py").write_text(textwrap.dedent("""
        from mar_tasks.tasks.doit_private import builds_at_once
        def report(i):
            open(f"n{i}", "w").write(str(builds_at_once()))
        def task_t():
            for i in range(2):
                yield {"name": str(i), "actions": [(report, [i])], "verbosity": 0}
        """))
    for args, expected in (([], "1"), (["-n", "2", "-P", "thread"], "2"), (["-n", "3", "-P", "process"], "3")):
        r = subprocess.run([sys.executable, "-m", "doit", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / "n0").read_text() == expected, (doit.__version__, args)


def test_saved_state_shape_is_the_md5_checkers(tmp_path: Path):
    (tmp_path / "a.txt").write_text("x")
    state = MD5Checker().get_state(str(tmp_path / "a.txt"), None)
    assert len(state) == 3 and isinstance(state[1], int) and len(state[2]) == 32


def test_a_forgotten_state_makes_doit_hash_the_file_again(tmp_path: Path):
    """uptodate forgets (None) the state of an input it rebuilds for: doit must then see it
    as changed and record it afresh after the build, whatever its mtime."""
    (tmp_path / "a.txt").write_text("x")
    dep = Dependency(DbmDB, str(tmp_path / "db"), checker_cls=MD5Checker)
    doit_state.save_state(dep, "t", "a.txt", None)
    dep.close()
    dep = Dependency(DbmDB, str(tmp_path / "db"), checker_cls=MD5Checker)
    assert doit_state.saved_state(dep, "t", "a.txt") is None
    dep.close()
    assert MD5Checker().get_state(str(tmp_path / "a.txt"), None) is not None


def test_values_kept_from_inside_the_action_are_saved_but_not_as_the_result(tmp_path: Path):
    """keep_values: what an archive task's action saves reaches ``_values_:`` in every
    runner (a -P process worker's Task comes back by pickle), and ``result:`` holds only
    the small dict the action returns."""
    (tmp_path / "dodo.py").write_text(textwrap.dedent("""
        from mar_tasks.tasks.doit_private import keep_values
        def act(task):
            keep_values(task, {"big": list(range(50)), "stamp": "s"})
            return {"stamp": "s"}
        def task_t():
            for i in range(2):
                yield {"name": str(i), "actions": [act], "verbosity": 0}
        """))
    for args in ([], ["-n", "2", "-P", "thread"], ["-n", "2", "-P", "process"]):
        for db in tmp_path.glob(".doit.db*"):
            db.unlink()
        r = subprocess.run([sys.executable, "-m", "doit", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        dep = Dependency(DbmDB, str(tmp_path / ".doit.db"))
        try:
            for name in ("t:0", "t:1"):
                assert dep.get_values(name) == {"big": list(range(50)), "stamp": "s"}, (doit.__version__, args)
                assert dep.get_result(name) == {"stamp": "s"}, (doit.__version__, args)
        finally:
            dep.close()
