"""mar_tasks: reproducible, fast model archives for TorchServe, as doit tasks."""
from .engine import BuildResult, build_archive
from .errors import ArchiveError
from .options import ArchiveOptions
from .selection import select_files
from .version import __version__

__all__ = ["ArchiveError", "ArchiveOptions", "BuildResult", "build_archive", "select_files",
           "__version__"]
