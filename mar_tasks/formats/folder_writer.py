"""Where the no-archive folder is written: files copied as they are, plus the manifest.

Copies keep the fixed mode and time every archive member gets, so the folder is as
reproducible as the archives. Files are copied with :mod:`.block_copy` (shared blocks on
XFS/btrfs, an in-kernel copy elsewhere); a file a rebuild carries over from the folder it
replaces is hard-linked from it (nothing read or written; the old folder goes at publish).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional

from mar_tasks.formats.block_copy import copy_file

from mar_tasks.errors import ArchiveError
from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.plan.selection import Entry
from mar_tasks.formats.input_files import check_unchanged


def write_folder(root: Path, manifest: bytes, entries: List[Entry], epoch: int,
                 progress: Optional[Callable[[int], None]] = None,
                 carried: Optional[Callable[[Entry], Optional[Path]]] = None,
                 kept: Optional[List[str]] = None) -> None:
    """Fill the (new, empty) folder `root` with the manifest and a copy of every entry.

    `carried` names, for an entry a rebuild may carry over, its file in the old folder
    (see :mod:`mar_tasks.formats.carry_over`); it is linked, or copied from the input where
    the link is refused; the names of the entries so linked are added to `kept`.
    """
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
        old = carried(e) if carried is not None else None
        if old is not None and _link(old, dest):
            if kept is not None:
                kept.append(e.arcname)
        else:
            try:
                done, st = copy_file(e.source, str(dest), e.size)
            except OSError as exc:
                raise ArchiveError(f"cannot copy {e.source} ({exc.strerror}); check it") from None
            check_unchanged(e, st, done)
        os.chmod(dest, 0o755 if e.executable else 0o644)
        os.utime(dest, (epoch, epoch))
        if progress is not None:
            progress(e.size)
    for d in sorted(made, key=lambda p: len(p.parts), reverse=True):
        if d != root:
            os.utime(d, (epoch, epoch))


def _link(old: Path, dest: Path) -> bool:
    """Hard-link the old folder's file at `dest`; False where the file system refuses."""
    try:
        os.link(old, dest, follow_symlinks=False)
    except OSError:
        return False
    return True
