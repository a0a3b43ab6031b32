"""mar_tasks: reproducible, fast model archives for TorchServe, as doit tasks.

The doit layer is imported on first use, so ``mar-archive`` does not pay for importing doit.
"""
from typing import Any

from .engine import BuildResult, build_archive
from .errors import ArchiveError
from .options import ArchiveOptions
from .selection import select_files
from .version import __version__

_DOIT_NAMES = ("archive_task", "project_tasks", "task_archive")

__all__ = ["ArchiveError", "ArchiveOptions", "BuildResult", "build_archive", "select_files",
           "__version__", *_DOIT_NAMES]


def __getattr__(name: str) -> Any:
    if name in _DOIT_NAMES:
        from . import doit_tasks
        return getattr(doit_tasks, name)
    raise AttributeError(f"module 'mar_tasks' has no attribute {name!r}")
