"""``mar-inspect``: show (and with ``--verify``, check) an archive's manifest and files.

Never writes, never follows links inside the archive, never blocks on a FIFO; every entry
name is printed escaped (see :mod:`mar_tasks.display`); every error is one line.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from mar_tasks.display import shown
from mar_tasks.cli.closed_pipe import quiet_on_closed_pipe
from mar_tasks.errors import ArchiveError
from mar_tasks.formats.archive_reader import Archive, verify


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "None":  # type: ignore[override]
        self.exit(2, f"mar-inspect: error: {message}; see mar-inspect -h\n")


@quiet_on_closed_pipe
def main(argv: Optional[List[str]] = None) -> int:
    p = _Parser(prog="mar-inspect",
                description="Print the manifest and file list of a .mar, .tar.gz or no-archive "
                            "folder. Nothing is extracted or written.")
    p.add_argument("archive")   # a str: Path("") would be the current folder
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verify", action="store_true",
                   help="check every byte, the layout, entry names, manifest and handler; "
                        "exit 1 on any problem")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except ArchiveError as exc:
        print(f"mar-inspect: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    archive = Archive(args.archive)   # an empty path is an error, not the current folder
    problems = verify(archive) if args.verify else None
    try:
        manifest: Optional[dict] = archive.manifest()
    except ArchiveError:
        if problems is None:
            raise
        manifest = None
    files = [m for m in archive.members if not m.is_dir]
    stamp = archive.stamp()
    if args.json:
        doc = {
            "path": str(archive.path), "format": archive.kind, "manifest": manifest,
            "files": [{"name": shown(m.name), "size": m.size, "stored_size": m.stored_size,
                       "method": m.method} for m in files],
            "stamp": stamp.decode("ascii", "replace") if stamp else None,
        }
        if problems is not None:
            doc["problems"] = problems
        # ensure_ascii: the manifest's strings are escaped too; strict_json let no NaN in
        print(json.dumps(doc, indent=2, allow_nan=False))
    else:
        print(f"{shown(str(archive.path))} ({archive.kind})")
        print(json.dumps(manifest, indent=2) if manifest is not None else "(no manifest)")
        names = [shown(m.name) for m in files]
        width = max((len(n) for n in names), default=4)
        print(f"{'name':<{width}}  {'size':>12}  {'stored':>12}  method")
        for n, m in zip(names, files):
            print(f"{n:<{width}}  {m.size:>12,}  {m.stored_size:>12,}  {m.method}")
        print(f"{len(files)} files, {sum(m.size for m in files):,} bytes")
        if problems is not None:
            for prob in problems:  # names in them are escaped already; nothing raw gets out
                print("PROBLEM: " + "".join(c if c.isprintable() else repr(c)[1:-1] for c in prob))
            print("verify: OK" if not problems else f"verify: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
