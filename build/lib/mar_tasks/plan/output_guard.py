"""Where an output is checked against the inputs: it may never be, hold or sit inside one.

Replacing a no-archive folder (or a file) deletes what was there, so an output that is the
model path, holds it, or lies inside it would destroy the user's files, excluded ones
(``.git/``, ``*.pyc``) included. Every check works on real paths, so a symlinked export or
model path cannot get around it. The name-length check lives here too: a name the file
system cannot hold is refused before anything is created.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Tuple

from mar_tasks.errors import ArchiveError

# Our temporaries are named ".mar_tasks-<pid>-<8 hex>.tmp" whatever the target (see atomic),
# so only the output's own name has to fit.
_DEFAULT_NAME_MAX = 255


# Within :func:`batch` (doit loading a thousand models), folders' real paths and name
# limits are remembered: one lstat per path instead of one per component.
_memo: Optional[Dict[str, object]] = None


@contextmanager
def batch() -> Iterator[None]:
    """Remember folders' real paths and name limits until the block ends."""
    global _memo
    outer, _memo = _memo, {} if _memo is None else _memo
    try:
        yield
    finally:
        _memo = outer


def realpath(path: str) -> str:
    """os.path.realpath, remembered per folder inside :func:`batch`."""
    if _memo is None:
        return os.path.realpath(path)
    hit = _memo.get(path)
    if hit is None:
        parent, name = os.path.split(path)
        if parent and name and parent != path and not os.path.islink(path):
            hit = os.path.join(realpath(parent), name)
        else:
            hit = os.path.realpath(path)
        _memo[path] = hit
    return hit  # type: ignore[return-value]


def real_output(output: Path) -> str:
    """The output's real path: its folder resolved, its own name kept (a link there is
    replaced, not followed)."""
    return os.path.join(realpath(str(output.parent)), output.name)


def _name_max(folder: Path) -> int:
    key = "pathconf:" + str(folder)
    if _memo is not None and key in _memo:
        return _memo[key]  # type: ignore[return-value]
    limit = _find_name_max(folder)
    if _memo is not None:
        _memo[key] = limit
    return limit


def _find_name_max(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            continue
    return _DEFAULT_NAME_MAX


def check_name_fits(output: Path) -> None:
    """Refuse a model name whose output file name the export folder cannot hold."""
    limit = _name_max(output.parent)
    length = len(os.fsencode(output.name))
    if length > limit:
        raise ArchiveError(
            f"model name is too long: the output {output.name[:40]}... would be {length} bytes "
            f"and this file system holds names of at most {limit}; shorten the model name"
        )


def check_output_apart(output: Path, inputs: Iterable[Tuple[str, str]]) -> None:
    """Raise unless the output is neither an input, nor holds one, nor sits inside one.

    `inputs` are (what, path) pairs: the model path, extra-files folders and every file
    named on its own.
    """
    out = real_output(output)
    for what, path in inputs:
        real = realpath(path)
        if out == real:
            how = "would replace"
        elif real.startswith(out + os.sep):
            how = "would hold (and so replace)"
        elif out.startswith(real + os.sep):
            how = "would sit inside"
        else:
            continue
        raise ArchiveError(
            f"the output {output} {how} the {what} {path}, whose files must never be "
            "touched; pass an --export-path outside it (or another --model-name)"
        )
