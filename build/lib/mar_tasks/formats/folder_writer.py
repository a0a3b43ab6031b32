"""Where the no-archive folder is written: files copied as they are, plus the manifest.

Copies keep the fixed mode and time every archive member gets, so the folder is as
reproducible as the archives.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, List, Optional

from mar_tasks.errors import ArchiveError
from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.plan.selection import Entry
from mar_tasks.formats.input_files import check_unchanged


def write_folder(root: Path, manifest: bytes, entries: List[Entry], epoch: int,
                 progress: Optional[Callable[[int], None]] = None) -> None:
    """Fill the (new, empty) folder `root` with the manifest and a copy of every entry."""
    made = set()

    def place(arcname: str) -> Path:
        dest = root / arcname
        parent = dest.parent
        if parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        return dest

    dest = place(MANIFEST_ARCNAME)
    dest.write_bytes(manifest)
    os.chmod(dest, 0o644)
    os.utime(dest, (epoch, epoch))
    for e in entries:
        dest = place(e.arcname)
        try:
            shutil.copyfile(e.source, dest)  # sendfile(2) on Linux: no copy through Python
            st = os.stat(e.source)
        except OSError as exc:
            raise ArchiveError(f"cannot copy {e.source} ({exc.strerror}); check it") from None
        check_unchanged(e, st, os.path.getsize(dest))
        os.chmod(dest, 0o755 if e.executable else 0o644)
        os.utime(dest, (epoch, epoch))
        if progress is not None:
            progress(e.size)
    for d in sorted(made, key=lambda p: len(p.parts), reverse=True):
        if d != root:
            os.utime(d, (epoch, epoch))
