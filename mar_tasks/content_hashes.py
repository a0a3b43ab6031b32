"""One MD5 per file content per run, shared by every task that depends on the file.

doit's MD5 checker hashes a file again for every task that depends on it and, for a file
touched without a content change, on every later run (its new mtime is never saved for an
up-to-date task). We keep an in-process record keyed by (path, size, mtime_ns): a file is
hashed at most once per run whatever the number of tasks, and :mod:`mar_tasks.uptodate`
writes refreshed mtimes back so the next run hashes nothing.

:func:`install` also routes doit's own ``get_file_md5`` (used when it saves state after a
build) through this record; the digest is the same MD5 hex, only memoised.

After a first build doit hashes every input in its main process, one file after another,
while the builds wait (``-n N``) or after the build has finished (serial run): for a fresh
checkout that costs as much as the build. :func:`prefetch` starts those hashes on
background threads when the task is found out of date, so they run beside the build.

:func:`prefetch` and :func:`file_md5` are called from doit's main thread only (its
up-to-date checks and state saving, under every runner); only the hashing is threaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from typing import TYPE_CHECKING, Any, ContextManager, Dict, Iterable, List, Optional, Tuple

if TYPE_CHECKING:
    from concurrent.futures import Future

Key = Tuple[str, int, int]
PREFETCH_FROM = 1 << 20

_record: Dict[Key, str] = {}
_pending: Dict[Key, "Future[Optional[str]]"] = {}
_jobs: "queue.SimpleQueue[Tuple[str, Key, Future[Optional[str]]]]" = queue.SimpleQueue()
_guards: List[threading.Lock] = []  # one per background thread


def _key(path: str, st: os.stat_result) -> Key:
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


_NO_GUARD = contextlib.nullcontext()


def _hash(path: str, key: Key, guard: "ContextManager[Any]" = _NO_GUARD) -> Optional[str]:
    """MD5 hex of `path`, or None if the file no longer matches `key` once read.

    A background thread holds its `guard` while inside OpenSSL (see :func:`_before_fork`).
    """
    with guard:
        h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            with guard:
                h.update(block)  # releases the GIL: prefetch threads run beside the build
        st = os.fstat(f.fileno())
    return h.hexdigest() if (st.st_size, st.st_mtime_ns) == key[1:] else None


def file_md5(path: str, st: "os.stat_result | None" = None) -> str:
    """MD5 hex of the file's content, hashed only if (path, size, mtime_ns) is new."""
    if st is None:
        st = os.stat(path)
    key = _key(path, st)
    digest = _record.get(key)
    if digest is not None:
        return digest
    pending = _pending.pop(key, None)
    digest = pending.result() if pending is not None else _hash(path, key)
    while digest is None:  # the file changed while it was hashed: hash what is there now
        key = _key(path, os.stat(path))
        digest = _hash(path, key)
    _record[key] = digest
    return digest


def prefetch(files: Iterable[Tuple[str, int]]) -> None:
    """Start hashing these (path, size) files in the background.

    Only files of at least ``PREFETCH_FROM`` bytes: for small ones the per-file overhead of a
    background job, and the GIL it takes from the build, cost more than the hash itself (a
    first build of 100,000 small files took twice as long). Files already known or missing
    are skipped.
    """
    for path, size in files:
        if size < PREFETCH_FROM:
            continue
        try:
            key = _key(path, os.stat(path))
        except OSError:
            continue  # doit reports the missing file
        if key in _record or key in _pending:
            continue
        from concurrent.futures import Future  # not at import: a no-op run never needs it
        if not _guards:
            for _ in range(os.cpu_count() or 1):
                # Daemon threads: a hash nobody waits for must not delay doit's exit.
                guard = threading.Lock()
                threading.Thread(target=_worker, args=(guard,), name="mar_tasks-md5",
                                 daemon=True).start()
                _guards.append(guard)
        _pending[key] = fut = Future()
        _jobs.put((path, key, fut))


def _before_fork() -> None:
    """``doit -n N`` forks its workers while our threads may be hashing. A thread forked in
    the middle of an OpenSSL call could leave a lock held in the child, whose own hashlib
    calls (the archive's stamp) would then hang; so no thread is inside OpenSSL at a fork."""
    for guard in _guards:
        guard.acquire()


def _after_fork_in_parent() -> None:
    for guard in _guards:
        guard.release()


def _after_fork_in_child() -> None:
    """The child has none of the parent's threads: start from nothing (the record stays)."""
    global _jobs
    _jobs = queue.SimpleQueue()
    _pending.clear()
    _guards.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _worker(guard: threading.Lock) -> None:
    while True:
        path, key, fut = _jobs.get()
        try:
            fut.set_result(_hash(path, key, guard))
        except Exception:  # never leave file_md5 waiting: it hashes again and raises there
            fut.set_result(None)


def install() -> None:
    """Make doit's MD5 checker use the shared record (same digests, computed once)."""
    import doit.dependency as dep

    if getattr(dep.get_file_md5, "__module__", "") != __name__:
        dep.get_file_md5 = file_md5
