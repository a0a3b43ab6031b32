"""mar_tasks: reproducible, fast model archives for TorchServe, as doit tasks.

Names load on first use: ``mar-archive`` does not import doit, and loading doit tasks (every
doit run, even a no-op) does not import the archive writers.
"""
from importlib import import_module
from typing import Any

from .errors import ArchiveError
from .version import __version__

_LAZY = {"ArchiveOptions": "options", "select_files": "selection",
         "build_archive": "engine", "BuildResult": "engine", "archive_task": "doit_tasks",
         "project_tasks": "doit_tasks", "task_archive": "doit_tasks",
         "task_publish": "publish_tasks",
         "Archive": "reader", "verify_archive": "reader",
         "hold_project_lock": "project_lock", "release_project_lock": "project_lock"}

__all__ = ["ArchiveError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in ("task_archive", "task_publish"):
        # A dodo that takes the project's tasks takes the project's lock, while doit imports
        # it: before doit opens its state file (see mar_tasks.project_lock).
        from .project_lock import hold_project_lock
        hold_project_lock()
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mar_tasks' has no attribute {name!r}")
