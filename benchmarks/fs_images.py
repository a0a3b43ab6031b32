"""A loop-mounted XFS image with reflink, and how much of a file shares its blocks.

Used by the benchmarks (``block_sharing.py``) and by ``tests/test_block_sharing.py``.
Mounting needs root and ``mkfs.xfs`` (Debian: ``apt-get install -y xfsprogs``); where
either is missing or the kernel refuses the mount, :func:`mount_xfs` raises
:class:`Unavailable` with the reason, and the callers skip. The image is sparse: it costs
only the blocks written to it.
"""
from __future__ import annotations

import array
import fcntl
import os
import shutil
import struct
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Tuple

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_HEAD = struct.Struct("=QQLLLL")           # struct fiemap
_EXTENT = struct.Struct("=QQQQQLLLL")      # struct fiemap_extent
BATCH = 512


class Unavailable(Exception):
    """No XFS mount here, and why."""


def _run(cmd: list) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Unavailable(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()[-300:]}")


@contextmanager
def mount_xfs(where: Path, size: str = "4G") -> Iterator[Path]:
    """Yield a fresh XFS file system (reflink on) mounted at ``where/mnt``; always
    unmounted and its image removed afterwards."""
    if os.geteuid() != 0:
        raise Unavailable("mounting a loop image needs root")
    if shutil.which("mkfs.xfs") is None:
        raise Unavailable("mkfs.xfs is not installed (apt-get install -y xfsprogs)")
    where.mkdir(parents=True, exist_ok=True)
    image, mnt = where / "xfs.img", where / "mnt"
    mnt.mkdir(exist_ok=True)
    try:
        _run(["truncate", "-s", size, str(image)])
        _run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(image)])
        _run(["mount", "-o", "loop", str(image), str(mnt)])
    except Unavailable:
        image.unlink(missing_ok=True)
        raise
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        image.unlink(missing_ok=True)
        try:
            mnt.rmdir()
        except OSError:
            pass


def shared_bytes(path: Path) -> Tuple[int, int]:
    """(bytes in extents the file system marks shared, bytes in all extents) of a file."""
    shared = total = 0
    start = 0
    with open(path, "rb") as f:
        while True:
            buf = array.array("B", _HEAD.pack(start, 2**64 - 1 - start, FIEMAP_FLAG_SYNC, 0, BATCH, 0)
                              + bytes(_EXTENT.size * BATCH))
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
            mapped = _HEAD.unpack_from(buf, 0)[3]
            last = False
            for i in range(mapped):
                logical, _, length, _, _, flags, _, _, _ = _EXTENT.unpack_from(buf, _HEAD.size + i * _EXTENT.size)
                total += length
                if flags & FIEMAP_EXTENT_SHARED:
                    shared += length
                start = logical + length
                last = bool(flags & FIEMAP_EXTENT_LAST)
            if mapped == 0 or last:
                return shared, total


def tree_shared_bytes(root: Path) -> Tuple[int, int]:
    """:func:`shared_bytes` summed over a file, or every file under a folder."""
    if root.is_file():
        return shared_bytes(root)
    shared = total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            s, t = shared_bytes(Path(dirpath) / name)
            shared, total = shared + s, total + t
    return shared, total
