"""mar_tasks: reproducible, fast model archives for TorchServe, as doit tasks.

Names load on first use: ``mar-archive`` does not import doit, and loading doit tasks (every
doit run, even a no-op) does not import the archive writers.
"""
from importlib import import_module
from typing import Any

from mar_tasks.errors import ArchiveError
from mar_tasks.version import __version__

_LAZY = {"ArchiveOptions": "plan.options", "select_files": "plan.selection",
         "build_archive": "engine", "BuildResult": "engine", "archive_task": "tasks.archive_tasks",
         "project_tasks": "tasks.archive_tasks", "task_archive": "tasks.archive_tasks",
         "task_publish": "tasks.publish_tasks",
         "Archive": "formats.archive_reader", "verify_archive": "formats.archive_reader",
         "hold_project_lock": "tasks.project_lock", "release_project_lock": "tasks.project_lock"}

__all__ = ["ArchiveError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in ("task_archive", "task_publish"):
        # A dodo that takes the project's tasks takes the project's lock, while doit imports
        # it: before doit opens its state file (see mar_tasks.tasks.project_lock).
        from mar_tasks.tasks.project_lock import hold_project_lock
        hold_project_lock()
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mar_tasks' has no attribute {name!r}")
