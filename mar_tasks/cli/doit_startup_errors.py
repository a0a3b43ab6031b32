"""One line instead of a traceback when doit itself cannot read ``pyproject.toml``.

doit reads ``[tool.doit]`` from ``pyproject.toml`` before it imports any dodo, so a file that
is not valid TOML ends ``doit`` with tomllib's traceback before mar_tasks' own code could
say anything. ``mar_tasks_doit_errors.pth`` (installed beside the package, see setup.py)
makes :func:`excepthook` the interpreter's last word on an uncaught exception: it imports
nothing until an exception reaches it (and steps aside if mar_tasks is gone), turns exactly
that one (a TOML decode error raised
while doit loads its configuration) into one line naming file, line and column, and hands
every other exception to the hook it replaced.
"""
from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Callable, Optional, Type

Hook = Callable[[Type[BaseException], BaseException, Optional[TracebackType]], object]


def _doit_config_file(tb: Optional[TracebackType]) -> Optional[str]:
    """The file doit's config loader was reading when `tb` was raised, if it was."""
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "load_config_toml" and code.co_filename.endswith(
                os.path.join("doit", "doit_cmd.py")):
            return str(tb.tb_frame.f_locals.get("filename", "pyproject.toml"))
        tb = tb.tb_next
    return None


def excepthook(previous: Hook, kind: Type[BaseException], exc: BaseException,
               tb: Optional[TracebackType]) -> object:
    path = _doit_config_file(tb) if kind.__name__ == "TOMLDecodeError" else None
    if path is None:
        return previous(kind, exc, tb)
    sys.stderr.write(f"ERROR: {os.path.abspath(path)} is not valid TOML ({exc}); fix it\n")
    return None
