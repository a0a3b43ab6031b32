"""The one line a run that used a store ends with, on stderr:

    mar_tasks cache: H hits, M misses, U uploads, E errors
    mar_tasks publish: P published, S unchanged, E errors

Actions may run in doit's worker processes, so each appends its outcome to a file made for
this run; the main doit process prints the totals when it exits. This exit hook is
registered only when a store is configured (never otherwise), once per process.
"""
from __future__ import annotations

import atexit
import os
import sys
import tempfile
from collections import Counter

from mar_tasks.store.settings import StoreSettings

_path = None


def start(settings: StoreSettings) -> StoreSettings:
    """Settings whose actions record into this run's file (made once per process)."""
    global _path
    if _path is None:
        fd, _path = tempfile.mkstemp(prefix="mar_tasks-store-", suffix=".log")
        os.close(fd)
        atexit.register(report, _path)
    return settings._replace(stats_file=_path)


def report(path: str) -> None:
    try:
        with open(path) as f:
            seen = Counter(line.strip() for line in f)
        os.unlink(path)
    except OSError:
        return
    cache = {k.split(" ", 1)[1]: v for k, v in seen.items() if k.startswith("cache ")}
    if cache:
        misses = sum(v for k, v in cache.items() if k not in ("hit", "error"))
        print(f"mar_tasks cache: {cache.get('hit', 0)} hits, {misses} misses, "
              f"{cache.get('upload', 0)} uploads, {cache.get('error', 0)} errors", file=sys.stderr)
    pub = {k.split(" ", 1)[1]: v for k, v in seen.items() if k.startswith("publish ")}
    if pub:
        print(f"mar_tasks publish: {pub.get('published', 0)} published, {pub.get('unchanged', 0)} "
              f"unchanged, {pub.get('error', 0)} errors", file=sys.stderr)
