"""The one line a ``doit publish`` run ends with, on stderr:

    mar_tasks publish: P published, S unchanged, E errors

Actions may run in doit's worker processes, so each appends its outcome to a file made for
this run; the main doit process prints the totals when it exits. This exit hook is
registered only when a publish URL is configured (never otherwise), once per process.
"""
from __future__ import annotations

import atexit
import os
import sys
import tempfile
from collections import Counter

from mar_tasks.store.settings import PublishSettings

_path = None


def start(settings: PublishSettings) -> PublishSettings:
    """Settings whose actions record into this run's file (made once per process)."""
    global _path
    if _path is None:
        fd, _path = tempfile.mkstemp(prefix="mar_tasks-publish-", suffix=".log")
        os.close(fd)
        atexit.register(report, _path)
    return settings._replace(stats_file=_path)


def record(settings: PublishSettings, outcome: str) -> None:
    """Count one model's outcome (published, unchanged, error) for the summary line."""
    if settings.stats_file:
        with open(settings.stats_file, "a") as f:
            f.write(f"{outcome}\n")


def report(path: str) -> None:
    try:
        with open(path) as f:
            seen = Counter(line.strip() for line in f)
        os.unlink(path)
    except OSError:
        return
    if seen:
        print(f"mar_tasks publish: {seen.get('published', 0)} published, {seen.get('unchanged', 0)} "
              f"unchanged, {seen.get('error', 0)} errors", file=sys.stderr)
