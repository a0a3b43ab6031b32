"""Remembered listings: a no-op ``doit archive`` walks no model folder.

Loading the tasks must give each archive task its exact ``file_dep``: every file
:func:`mar_tasks.plan.selection.select_files` would archive. Walking every model folder on every
run costs about what doit's own check of those files costs. A folder's listing can only
change if its mtime or ctime moves (an entry added, removed or renamed; its permissions
changed) or its path leads to another folder (another inode). So for each model we remember
the listing with the stat checks of the folders it read and of the files named on their own
(:mod:`mar_tasks.plan.stat_checks`), and reuse it while every check holds: one ``stat`` per
folder instead of a walk.

A listing is not remembered when stat checks cannot vouch for it: a symlink (its target may
change while no folder's stat check moves), an ``--extra-files`` wildcard, a handler file found
by searching past a folder that lacked it, or a folder changed less than :data:`RACY_NS`
before it was read (a later change could keep the same mtime within the file system's
timestamp granularity: git's "racily clean" rule). Only ``file_dep`` and the clean list
come from here: a build lists the files again and checks everything
(:func:`mar_tasks.engine.plan_build`).

The same file serves :func:`mar_tasks.archive_task` calls in a dodo of your own: a call's
listing is remembered under the call's arguments (its resolved options and
``SOURCE_DATE_EPOCH``), and saved when doit starts checking tasks, that is once every task
creator has run (:func:`save_pending`); calls not made by that run are forgotten.

The file is ``.mar_tasks.listings`` in the project folder (beside the project's lock),
written atomically by the process that holds the lock. It holds two parts, marshalled apart:
the pyproject models' listings by name and the calls' by key; a reader unmarshals only its
own, and a save re-reads the file and keeps the other part as it is. A file of ours that cannot be read,
is damaged or is of another version is ignored and replaced; a file of that name that does
not start with our magic line is someone else's and is left alone (nothing is remembered
then); deleting the file is always safe. ``MAR_TASKS_LISTING_CACHE=0`` turns the cache off.
"""
from __future__ import annotations

import marshal
import os
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from mar_tasks.plan.stat_checks import StatCheck, still_holds
from mar_tasks.regular_files import NotRegularFile, open_regular
from mar_tasks.version import __version__, deflate_version

FILE_NAME = ".mar_tasks.listings"
MAGIC = b"mar_tasks listings\n"
RACY_NS = 2_000_000_000  # coarser than any file system's mtime granularity we know (FAT: 2 s)
# The options' digest in each listing (Listing.config) depends on the deflate version too:
# a file written under another one is ignored.
_FORMAT = ("mar_tasks listings", 2, __version__, tuple(sys.version_info[:2]), deflate_version())
MODELS, CALLS = 0, 1  # the file's two parts: pyproject models by name, archive_task() calls by key


class Listing(NamedTuple):
    """What a task needs of its model's listing, and what vouches for it."""

    key: str                  # what the options are made of (ModelSpec.key, call_key)
    cwd: str                  # the folder the paths below are relative to
    config: str               # the options' digest (doit_tasks.options_digest)
    target: str               # the archive, spelled as a file_dep
    deps: Tuple[str, ...]     # the file_dep: every file the archive holds
    arcnames: Tuple[str, ...]  # their names in the archive (for doit clean)
    checks: Optional[Tuple[StatCheck, ...]]  # None: stat checks cannot vouch for this listing


def enabled() -> bool:
    return os.environ.get("MAR_TASKS_LISTING_CACHE", "1") != "0"


def _well_formed(hit: Listing) -> bool:
    """The record's fields have the types doit will be given (a file edited by hand or
    damaged could hold anything marshal can)."""
    return type(hit.config) is str and type(hit.target) is str \
        and type(hit.deps) is tuple and all(type(d) is str for d in hit.deps) \
        and type(hit.arcnames) is tuple and all(type(a) is str for a in hit.arcnames)


class ListingCache:
    """The remembered listings of one project's models by model name (`part` MODELS), or
    of the archive_task() calls made in a folder by key (CALLS)."""

    def __init__(self, folder: str, writable: bool, part: int = MODELS) -> None:
        self.path = Path(folder, FILE_NAME)
        self.writable = writable
        self.part = part
        self.foreign = False  # a file of our name that we did not write: never replaced
        self.old: Dict[str, tuple] = self._unpack(self._read()[part])  # plain tuples
        self.new: Dict[str, tuple] = {}

    def _read(self) -> List[bytes]:
        """The file's two parts, each still marshalled (b"" for an empty or unusable one)."""
        try:
            with open_regular(self.path) as f:
                raw = f.read()
        except NotRegularFile:  # a link, folder or FIFO of that name: not ours, never
            self.foreign = True  # followed, never waited on
            return [b"", b""]
        except OSError:
            return [b"", b""]
        if not raw.startswith(MAGIC):
            self.foreign = True
            return [b"", b""]
        try:
            data = marshal.loads(raw[len(MAGIC):])
        except (EOFError, ValueError, TypeError):
            return [b"", b""]
        if isinstance(data, tuple) and len(data) == 3 and data[0] == _FORMAT \
                and type(data[1]) is bytes and type(data[2]) is bytes:
            return [data[1], data[2]]
        return [b"", b""]

    @staticmethod
    def _unpack(part: bytes) -> Dict[str, tuple]:
        try:
            data = marshal.loads(part) if part else {}
        except (EOFError, ValueError, TypeError):
            return {}
        return data if isinstance(data, dict) else {}

    def lookup(self, name: str, key: str, cwd: str) -> Optional[Listing]:
        """The remembered listing of `name`, if its options, folder and stat checks still hold."""
        record = self.old.get(name)
        if record is None:
            return None
        try:
            hit = Listing(*record)
            if hit.key != key or hit.cwd != cwd or not _well_formed(hit) \
                    or not all(map(still_holds, hit.checks)):
                return None
        except (TypeError, ValueError):  # a damaged record: list afresh
            return None
        self.new[name] = record
        return hit

    def remember(self, name: str, listing: Listing, started_ns: int) -> None:
        """Keep a fresh listing, read from `started_ns` on, if its stat checks vouch for it."""
        if listing.checks is None or not listing.key:
            return
        limit = started_ns - RACY_NS
        if any(s[0] == "d" and (s[4] >= limit or s[5] >= limit) for s in listing.checks):
            return  # racily clean: a change within the timestamp granularity could hide
        self.new[name] = tuple(listing)

    def save(self, models: Iterable[str]) -> None:
        """Write the listings of the project's `models` if any changed (atomically).

        Models this run did not load (another ``--shard``) keep their old listing: a
        listing is only ever used after every one of its stat checks held again.
        """
        self._write({n: self.new.get(n) or self.old[n] for n in models if n in self.new or n in self.old})

    def save_calls(self) -> None:
        """Write the listings of the archive_task() calls this process made, if any changed."""
        self._write(dict(self.new))

    def _write(self, data: Dict[str, tuple]) -> None:
        """Write `data` as this cache's part, the other part as the file holds it now."""
        if not self.writable or data == self.old:
            return
        parts = self._read()
        parts[self.part] = marshal.dumps(data)
        if self.foreign:
            print(f"mar_tasks: {self.path} was not written by mar_tasks, so model listings are "
                  "not remembered (every run walks every model); move that file away",
                  file=sys.stderr)
            return
        from mar_tasks import atomic
        try:
            with atomic.staged(self.path, is_dir=False) as tmp:
                tmp.write_bytes(MAGIC + marshal.dumps((_FORMAT, *parts)))
        except OSError:
            return  # a folder we may not write to: the next run walks again
        self.old = data


# archive_task() calls: one cache per project folder and process, saved by save_pending.
_call_caches: Dict[str, ListingCache] = {}
_pending: List[ListingCache] = []


def call_cache(folder: str, writable: Callable[[], bool]) -> ListingCache:
    """The listings of archive_task() calls made in `folder` (read once per process;
    `writable` is asked then: whether this process holds the project's lock)."""
    cache = _call_caches.get(folder)
    if cache is None:
        cache = _call_caches[folder] = ListingCache(folder, writable(), CALLS)
    if cache not in _pending:
        _pending.append(cache)
    return cache


def call_key(call_repr: str) -> str:
    """Where a call's listing is remembered: its arguments (with the folder relative paths
    are taken against) and the ``SOURCE_DATE_EPOCH`` its options' digest was made under."""
    return repr((call_repr, os.environ.get("SOURCE_DATE_EPOCH")))


def save_pending() -> None:
    """Save the call listings remembered since the last save (doit calls each task's
    uptodate setup once loading is over: that is where this runs)."""
    while _pending:
        _pending.pop().save_calls()
