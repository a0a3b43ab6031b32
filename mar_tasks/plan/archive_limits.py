"""How many entries, and how many bytes of names, an archive may hold: the most
``mar-inspect --verify`` reads (memory is kept per entry), refused by the writer first so
that our own output always verifies (docs/formats.md, "Limits")."""
from __future__ import annotations

from typing import Iterable

from mar_tasks.display import shown
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.entry_names import name_problem_canonical
from mar_tasks.plan.limits import INDEX_BYTES_PER_ENTRY, MAX_ENTRIES, MAX_INDEX_BYTES, MAX_NAME_MEMORY, name_memory


def check_entry_names(arcnames: Iterable[str], prefix: str = "") -> None:
    """Refuse a name --verify would refuse (as stored: `prefix` is a tgz's top folder), so
    that the writer and the verifier keep one rule: a drive letter (``x:``), a backslash,
    a component past 255 bytes, a name past 3,840."""
    for name in arcnames:
        why = name_problem_canonical(prefix + name, False)
        if why:
            raise ArchiveError(f"cannot archive {shown(name)}: its name {why}; rename it")


def check_archive_size(arcnames: Iterable[str]) -> None:
    """Refuse a selection whose archive --verify would refuse as too large."""
    folders = set()
    count = name_bytes = memory = 0
    for name in arcnames:
        count += 1
        name_bytes += len(name.encode("utf-8", "surrogateescape")) + INDEX_BYTES_PER_ENTRY
        memory += name_memory(name)
        parts = name.split("/")
        for i in range(1, len(parts)):
            folders.add("/".join(parts[:i]))
    entries = count + len(folders) + 3   # MAR-INF/, its manifest, a tgz's top folder
    if entries > MAX_ENTRIES:
        raise ArchiveError(f"{entries:,} files and folders to archive; mar-inspect --verify reads "
                           f"at most {MAX_ENTRIES:,} entries: split the model")
    if memory > MAX_NAME_MEMORY:
        raise ArchiveError(f"the archive's names take {memory:,} bytes in memory; mar-inspect "
                           f"--verify reads at most {MAX_NAME_MEMORY:,} (non-ASCII names count four "
                           "per character): shorten the paths or split the model")
    if name_bytes > MAX_INDEX_BYTES:
        raise ArchiveError(f"the archive's names take {name_bytes:,} bytes; mar-inspect --verify "
                           f"reads at most {MAX_INDEX_BYTES:,}: shorten the paths or split the model")
