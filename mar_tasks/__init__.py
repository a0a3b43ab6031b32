"""mar_tasks: reproducible, fast model archives for TorchServe, as doit tasks."""
from .doit_tasks import archive_task, project_tasks, task_archive
from .engine import BuildResult, build_archive
from .errors import ArchiveError
from .options import ArchiveOptions
from .selection import select_files
from .version import __version__

__all__ = ["ArchiveError", "ArchiveOptions", "BuildResult", "archive_task", "build_archive",
           "project_tasks", "select_files", "task_archive", "__version__"]
