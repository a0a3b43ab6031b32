"""The single timestamp every archive entry and the manifest carry.

Archives must be byte-identical for the same inputs, so no clock or file mtime is used:
``SOURCE_DATE_EPOCH`` when set (the reproducible-builds convention), otherwise
1980-01-01 00:00:00 UTC, the earliest time a zip entry can hold.
"""
from __future__ import annotations

import os
import time

from mar_tasks.errors import ArchiveError

ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z
# 2107-12-31T23:59:59Z: the last time a zip entry's MS-DOS date holds (zip_date_time would
# otherwise clamp the year silently); well inside what tar's octal field, GNU tar,
# tarfile and commons-compress take (they fail on times past 10 digits or Java's Instant).
LAST_EPOCH = 4354819199


def build_epoch() -> int:
    """Seconds since 1970 to stamp entries with (never before 1980, for zip's sake; after
    2107 is an error)."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return ZIP_EPOCH
    try:
        value = int(raw)
    except ValueError:
        raise ArchiveError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds; fix or unset it"
        ) from None
    if value > LAST_EPOCH:
        raise ArchiveError(
            f"SOURCE_DATE_EPOCH={raw} is out of range; use a value between {ZIP_EPOCH} (1980) "
            f"and {LAST_EPOCH} (2107, the last date a zip holds)")
    return max(value, ZIP_EPOCH)


def epoch_record() -> str:
    """``SOURCE_DATE_EPOCH`` as it enters the options' digest: the epoch the build will use,
    so spellings that give the same bytes (unset, empty, ``10``, `` 0010 ``: all before 1980)
    give the same record. A value the build refuses is kept as given (stripped)."""
    try:
        return str(build_epoch())
    except ArchiveError:
        return "invalid " + os.environ.get("SOURCE_DATE_EPOCH", "").strip()


def zip_date_time(epoch: int) -> "tuple[int, int]":
    """(dos_time, dos_date) of `epoch` in UTC."""
    t = time.gmtime(epoch)
    year = min(max(t.tm_year, 1980), 2107)
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dos_time, dos_date


def created_on(epoch: int) -> str:
    """The manifest's ``createdOn`` in torch-model-archiver's format, in UTC."""
    return time.strftime("%d/%m/%Y %H:%M:%S", time.gmtime(epoch))
