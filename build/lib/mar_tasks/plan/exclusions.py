"""Which files and folders never go into an archive (the spec's "excluded files").

The spec excludes hidden files, Mac system files (``__MACOSX``, ``.DS_Store``),
``MANIFEST.json`` and Python byte code (``.pyc``, ``__pycache__``). Like both reference
archivers we also leave out ``.mar`` files, so an export path inside the model path never
archives older archives. Our own temporary files are hidden, so they are excluded too.
"""
from __future__ import annotations

EXCLUDED_DIRS = frozenset({"__MACOSX", "__pycache__"})
EXCLUDED_FILES = frozenset({"MANIFEST.json", ".DS_Store"})
EXCLUDED_SUFFIXES = (".pyc", ".mar")


def is_excluded_dir(name: str) -> bool:
    """True for a folder whose whole tree is left out."""
    return name.startswith(".") or name in EXCLUDED_DIRS


def is_excluded_file(name: str) -> bool:
    """True for a file name that is left out wherever it stands."""
    return (
        name.startswith(".")
        or name in EXCLUDED_FILES
        or name.endswith(EXCLUDED_SUFFIXES)
    )
