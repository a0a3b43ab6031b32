"""Every use of doit's private API, in one place.

doit 0.36/0.37 offer no public way to read or refresh one file_dep's saved state, or to
know how many tasks run at once. `tests/test_doit_state.py` checks each of these against
the doit that is installed and fails loudly when doit changes; `.ci/run` runs it against
the oldest and the newest doit that pyproject.toml admits.
"""
from __future__ import annotations

import sys
from typing import Any, Optional, Sequence


def saved_state(dep_manager: Any, task_name: str, dep: str) -> Optional[Any]:
    """What doit saved for `dep` of `task_name` (MD5 checker: [mtime, size, md5])."""
    return dep_manager._get(task_name, dep)


def save_state(dep_manager: Any, task_name: str, dep: str, state: Optional[Sequence[Any]]) -> None:
    """Replace doit's saved state of one file_dep (written to the DB at the run's end);
    None makes doit treat the file as changed and hash it after the next build."""
    dep_manager._set(task_name, dep, state)


def saved_checker(dep_manager: Any, task_name: str) -> Optional[str]:
    """The checker class name doit saved with the task's last successful run."""
    return dep_manager._get(task_name, "checker:")


def save_values(dep_manager: Any, task_name: str, values: dict) -> None:
    """Replace the task's saved values (doit saves them under ``_values_:``)."""
    dep_manager._set(task_name, "_values_:", values)


def keep_values(task: Any, values: dict) -> None:
    """Have doit save `values` as the task's values (``_values_:``) when its action
    succeeds, from inside the action (doit passes it the Task; a ``-P process`` worker's
    Task, values included, is sent back to the main process). An action's returned dict
    would be saved twice, as values and as ``result:``, and doit decodes every task's
    record on every run."""
    task.values.update(values)


def builds_at_once() -> int:
    """How many tasks the running doit executes at once: N under ``doit -n N`` (process or
    thread workers), else 1. doit tells an action nothing about it, so we look for its
    multi-process runner (``MRunner``, of which the thread runner is a subclass) among the
    callers; it is there in the worker whatever the start method."""
    from doit.runner import MRunner

    frame = sys._getframe(1)
    while frame is not None:
        runner = frame.f_locals.get("self")
        if isinstance(runner, MRunner):
            return max(1, int(runner.num_process))
        frame = frame.f_back
    return 1
