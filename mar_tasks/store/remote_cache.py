"""The shared build cache: an archive is looked up by its input digest before it is built,
and uploaded after it is built (mode ``read-write``).

Objects live at ``<url>/<input digest><suffix>`` with the archive's SHA-256 and the input
digest in their metadata. Nothing fetched is trusted: it is downloaded to a temporary file
beside the target and published only if its size and SHA-256 match the metadata, it
carries our stamp, passes every ``mar-inspect --verify`` check, holds exactly the manifest
these options make, and every entry's SHA-256 equals the local input's. Anything else is
a miss with a warning naming the key, so an archive forged under a real key by someone with
write access is never used. The store is never needed for correctness (see
:mod:`mar_tasks.store.s3_store`).
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

from mar_tasks import atomic
from mar_tasks.errors import ArchiveError
from mar_tasks.store.input_digest import InputDigest, sha256_file
from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.plan.options import SUFFIXES, ArchiveOptions
from mar_tasks.formats.archive_reader import Archive, content_digests, verify
from mar_tasks.store.s3_store import Store, StoreError, StoreUrl
from mar_tasks.plan.selection import Entry
from mar_tasks.formats.input_files import check_all_unchanged
from mar_tasks.store.settings import StoreSettings

_stores: Dict[str, Store] = {}  # one per URL per process: "off after a failure" holds for the run


def store_for(url: str, label: str) -> Store:
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = Store(StoreUrl.parse(url, f"{label} url"), label)
    return store


def object_name(opts: ArchiveOptions, digest: str) -> str:
    return digest + SUFFIXES[opts.archive_format]


def check_fetched(path: Path, head: dict, sha256: str, digest: InputDigest,
                  manifest: bytes) -> Optional[str]:
    """Why the downloaded file at `path` (whose bytes hashed to `sha256` as they arrived)
    must not be used, or None."""
    meta = head["metadata"]
    if meta.get("input-digest") != digest.digest:
        return "its metadata names another input digest"
    size = os.path.getsize(path)
    if size != head["size"]:
        return f"{size} bytes arrived, the store said {head['size']}"
    if meta.get("sha256") != sha256:
        return "its SHA-256 differs from the one stored with it"
    try:
        archive = Archive(path)
        if archive.stamp() is None:
            return "it carries no mar_tasks stamp"
        found: Dict[str, str] = {}
        # a zip's entry digests come from the same pass; the file has a temporary name yet
        problems = verify(archive, found, check_file_name=False)
        if problems:
            return f"--verify: {problems[0]}"
        if archive.read(MANIFEST_ARCNAME) != manifest:
            return "its manifest is not the one these options make"
        expected = {MANIFEST_ARCNAME: hashlib.sha256(manifest).hexdigest(), **digest.sha256}
        if (found if archive.kind == "zip" else content_digests(archive)) != expected:
            return "its entries are not the local inputs (names or SHA-256 differ)"
    except ArchiveError as exc:
        return str(exc)
    return None


def fetch(store: Store, opts: ArchiveOptions, entries: List[Entry], digest: InputDigest,
          manifest: bytes) -> Optional[str]:
    """Try the cache: 'hit' (the archive is published at its target), 'miss', 'rejected'
    (warned: it failed a check) or 'error' (the store failed; warned)."""
    name = object_name(opts, digest.digest)
    try:
        head = store.head(name)
        if head is None:
            return "miss"
        target = opts.output_path
        with atomic.staged(target, False) as tmp:
            sha256 = store.download(name, str(tmp))
            why = check_fetched(tmp, head, sha256, digest, manifest)
            if why:
                print(f"mar_tasks: warning: cache object {store.url.key(name)} rejected ({why}); "
                      "building locally", file=sys.stderr, flush=True)
                raise _Rejected()
            check_all_unchanged(entries)  # what we verified against is still what is on disk
        return "hit"
    except _Rejected:
        return "rejected"
    except StoreError:
        return "error"
    except OSError as exc:  # writing the download here failed: build, which says why
        print(f"mar_tasks: warning: cannot write {exc.filename or 'the download'} "
              f"({exc.strerror}); building locally", file=sys.stderr, flush=True)
        return "error"


class _Rejected(Exception):
    pass


def upload(store: Store, path: Path, name: str, input_digest: str) -> str:
    """Put a finished archive under `name`: 'upload', 'read-only' or 'error'."""
    meta = {"input-digest": input_digest, "sha256": sha256_file(str(path))[0]}
    try:
        return "upload" if store.upload(str(path), name, meta) else "read-only"
    except StoreError:
        return "error"


def record(settings: StoreSettings, kind: str, outcome: str) -> None:
    """Count an outcome for the run's summary line (see :mod:`mar_tasks.tasks.run_summary`)."""
    if settings.stats_file:
        with open(settings.stats_file, "a") as f:
            f.write(f"{kind} {outcome}\n")
