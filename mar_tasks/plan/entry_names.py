"""Entry names every extractor turns into the same path, and listings in which no entry
lands on another's path.

Readers normalise names differently on extraction (Java's ``File`` drops ``./`` and doubled
slashes, zipfile strips leading slashes and ``..``, tar creates a file where ``a/`` was a
folder), so a later entry spelled differently can replace an earlier one in one reader and
not in another. The verifier therefore accepts only canonical names: components separated
by single ``/``, none empty, ``.`` or ``..``; a trailing ``/`` exactly on folders; and no
entry on the path of another or inside a file.
"""
from __future__ import annotations

from typing import Optional

from mar_tasks.display import name_problem
from mar_tasks.plan import limits
from mar_tasks.plan.name_collisions import listing_problems

__all__ = ["unsafe_name", "name_problem_canonical", "listing_problems"]


def unsafe_name(name: str) -> Optional[str]:
    """Why an entry name could escape an extraction folder, or None if it is safe."""
    if not name or name.startswith(("/", "\\")):
        return "absolute path"
    if len(name) > 1 and name[1] == ":":
        return f"starts with {name[:2]!r}, which Windows readers take for a drive letter"
    if "\\" in name:
        return "backslash in name"
    if ".." in name.split("/"):
        return "'..' in path"
    return name_problem(name)


def name_problem_canonical(name: str, is_dir: bool) -> Optional[str]:
    """Why `name` (as stored; folders end in ``/``) is not one every reader extracts to the
    same single path, or None."""
    why = unsafe_name(name)
    if why:
        return why
    if name.endswith("/") != is_dir:
        return ("a folder entry whose name does not end in '/'" if is_dir else
                "a file entry whose name ends in '/' (some readers make it a folder)")
    path = name[:-1] if is_dir else name
    parts = path.split("/")
    if any(p in ("", ".") for p in parts):
        return "'.', '//' or a trailing '/' in the path (readers normalise it differently)"
    if len(parts) > limits.MAX_DEPTH:
        return f"more than {limits.MAX_DEPTH} folder levels"
    if len(name.encode("utf-8", "surrogateescape")) > limits.MAX_NAME_BYTES:
        return f"longer than {limits.MAX_NAME_BYTES} bytes"
    if any(len(p) > limits.MAX_COMPONENT_BYTES // 4 and
           len(p.encode("utf-8", "surrogateescape")) > limits.MAX_COMPONENT_BYTES for p in parts):
        return (f"a file or folder name longer than {limits.MAX_COMPONENT_BYTES} bytes "
                "(no reader can create it)")
    return None
