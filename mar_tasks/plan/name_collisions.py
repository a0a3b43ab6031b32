"""Archive paths that would land on each other when extracted: the writer refuses such a
selection and the verifier such an archive (through :mod:`mar_tasks.plan.entry_names`),
so that our own output always verifies."""
from __future__ import annotations

import unicodedata
from typing import Iterable, List, Tuple

from mar_tasks.display import shown


def listing_problems(entries: Iterable[Tuple[str, bool]]) -> List[str]:
    """Problems of a whole listing of (canonical path without trailing '/', is_dir): the same
    path twice, a path inside a file, and (reported) paths that differ only by case or
    Unicode normalisation, which collide on macOS and Windows."""
    problems: List[str] = []
    items = list(entries)
    counts: dict = {}
    for path, is_dir in items:
        counts.setdefault(path, []).append(is_dir)
    for path, kinds in counts.items():
        if len(kinds) > 1:
            what = "both a file and a folder" if len(set(kinds)) > 1 else f"{len(kinds)} times"
            problems.append(f"duplicate entry name {shown(path)} ({what})")
    # Sorted with '/' as the smallest character and ASCII case folded, whatever lies under `a`
    # (or `A`: one folder on macOS and Windows) follows `a` at once, but for case twins.
    # Keys in UTF-8: one byte per byte, where a str with one emoji takes four per character.
    order = sorted(counts, key=_inside_key)
    for here, after in zip(order, order[1:]):
        if not all(counts[here]) and _inside_key(after).startswith(_inside_key(here) + b"\0"):
            case = "" if after.startswith(here + "/") else " (but for case: the same on macOS and Windows)"
            problems.append(f"entry {shown(after)} lies inside the file {shown(here)}{case}")
    folded: dict = {}   # hash of the folded name -> names: the folded copies are not kept
    for path in order:
        key = _folded(path)
        twin = next((p for p in folded.get(hash(key), ()) if _folded(p) == key), None)
        if twin is not None:
            problems.append(f"entry names {shown(twin)} and {shown(path)} differ only by case "
                            "or Unicode normalisation (one replaces the other on macOS and Windows)")
        else:
            folded.setdefault(hash(key), []).append(path)
    return problems


def _inside_key(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape").lower().replace(b"/", b"\0")


def _folded(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()
