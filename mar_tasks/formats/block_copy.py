"""Copying a range of one file into another without passing the bytes through Python.

``copy_file_range(2)`` clones the blocks where the file system can share them (XFS with
reflink, btrfs: both offsets on a block boundary; the unaligned tail is copied in the
kernel) and copies in the kernel elsewhere (ext4, tmpfs). Where the kernel refuses it
(another file system than the source's: EXDEV; no support: EOPNOTSUPP, ENOSYS; a file
system that rejects the offsets: EINVAL), the range is copied with ordinary reads and
writes: the same bytes, only slower. ``MAR_TASKS_BLOCK_COPY=plain`` asks for the ordinary
copy everywhere (to compare, or where a kernel's copy_file_range is not trusted).
"""
from __future__ import annotations

import errno
import os

_FALLBACK = {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
STEP = 1 << 20  # ordinary copies go through a buffer this large


def _kernel_copy_allowed() -> bool:
    return hasattr(os, "copy_file_range") and os.environ.get("MAR_TASKS_BLOCK_COPY") != "plain"


def copy_range(src: int, src_at: int, dst: int, dst_at: int, length: int) -> int:
    """Copy `length` bytes of descriptor `src` from `src_at` to `dst` at `dst_at`; return
    the bytes copied, fewer only if `src` ended early (the caller reports that).

    Neither descriptor's position is used (where the system has no pread, pwrite, as on
    Windows, they are moved).
    """
    done = 0
    if _kernel_copy_allowed():
        while done < length:
            try:
                n = os.copy_file_range(src, dst, length - done, src_at + done, dst_at + done)
            except OSError as exc:
                if exc.errno not in _FALLBACK:
                    raise
                break  # copy the rest the ordinary way
            if n == 0:
                return done
            done += n
    while done < length:
        data = pread(src, min(STEP, length - done), src_at + done)
        if not data:
            return done
        view = memoryview(data)
        while view:
            written = _pwrite(dst, view, dst_at + done)
            view = view[written:]
            done += written
    return done


def pread(fd: int, n: int, at: int) -> bytes:
    """Up to `n` bytes of `fd` at `at` (its position is not used where the system has pread)."""
    if hasattr(os, "pread"):
        return os.pread(fd, n, at)
    os.lseek(fd, at, os.SEEK_SET)  # (Windows: no pread; the callers seek before they read)
    return os.read(fd, n)


def _pwrite(fd: int, data: memoryview, at: int) -> int:
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, at)
    os.lseek(fd, at, os.SEEK_SET)
    return os.write(fd, data)


def copy_file(src_path: str, dst_path: str, size: int) -> "tuple[int, os.stat_result]":
    """Create `dst_path` (it must not exist) with the first `size` bytes of `src_path`;
    return the bytes copied and the source's stat after the copy (the caller checks that
    the source did not change meanwhile)."""
    with open(src_path, "rb", buffering=0) as src:
        fd = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            done = copy_range(src.fileno(), 0, fd, 0, size)
        finally:
            os.close(fd)
        return done, os.fstat(src.fileno())
