"""Showing names from an archive safely: an entry name is data someone else chose.

A name with an escape sequence or a newline printed raw rewrites the user's terminal or
forges output lines; a byte that is not UTF-8 crashes printing under a strict locale.
"""
from __future__ import annotations


def shown(name: str) -> str:
    """`name` with every unprintable character escaped (``\\n``, ``\\x1b``, ``\\u202e``),
    bytes that were not UTF-8 (surrogateescape) as ``\\xNN``, and ``\\`` doubled."""
    if name.isprintable() and "\\" not in name:  # nothing to escape: the common case, in C
        return name
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def name_problem(name: str) -> "str | None":
    """Why a name is unfit for an archive (not UTF-8, control characters), or None."""
    if name.isprintable():  # the common case, checked in C: names can be long and many
        return None
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        return "is not valid UTF-8"
    if any(not ch.isprintable() and ch != " " for ch in name):
        return "holds control or invisible characters"
    return None
