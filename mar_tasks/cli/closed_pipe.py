"""A reader that goes away (``mar-inspect x.mar | head``) ends a command quietly.

Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError; left alone it
prints a traceback, and the interpreter's last flush of stdout fails once more at exit.
Commands exit instead as one killed by SIGPIPE would (status 141, nothing printed), as
``cat`` and ``git`` do.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable, List, Optional

Main = Callable[[Optional[List[str]]], int]


def quiet_on_closed_pipe(main: Main) -> Main:
    @functools.wraps(main)
    def run(argv: Optional[List[str]] = None) -> int:
        try:
            status = main(argv)
            sys.stdout.flush()  # what is still buffered fails here, not at exit
            return status
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            for stream in (sys.stdout, sys.stderr):  # the interpreter flushes both at exit
                try:
                    os.dup2(devnull, stream.fileno())
                except (OSError, ValueError):
                    pass
            os.close(devnull)
            return 128 + signal.SIGPIPE
    return run
