"""``mar-inspect``: show (and with ``--verify``, check) an archive's manifest and files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .errors import ArchiveError
from .reader import Archive, verify


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mar-inspect",
                                description="Print the manifest and file list of a .mar, .tar.gz "
                                            "or no-archive folder. Nothing is extracted.")
    p.add_argument("archive", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--verify", action="store_true",
                   help="check manifest, handler, CRCs and entry names; exit 1 on any problem")
    args = p.parse_args(argv)
    try:
        archive = Archive(args.archive)
        problems = verify(archive) if args.verify else None
        try:
            manifest = archive.manifest()
        except ArchiveError:
            if problems is None:
                raise
            manifest = None
    except ArchiveError as exc:
        print(f"mar-inspect: error: {exc}", file=sys.stderr)
        return 1
    files = [m for m in archive.members if not m.is_dir]
    if args.json:
        doc = {
            "path": str(archive.path), "format": archive.kind, "manifest": manifest,
            "files": [{"name": m.name, "size": m.size, "stored_size": m.stored_size,
                       "method": m.method} for m in files],
            "stamp": (archive.stamp() or b"").decode("ascii", "replace") or None,
        }
        if problems is not None:
            doc["problems"] = problems
        print(json.dumps(doc, indent=2))
    else:
        print(f"{archive.path} ({archive.kind})")
        print(json.dumps(manifest, indent=2) if manifest is not None else "(no manifest)")
        width = max((len(m.name) for m in files), default=4)
        print(f"{'name':<{width}}  {'size':>12}  {'stored':>12}  method")
        for m in files:
            print(f"{m.name:<{width}}  {m.size:>12,}  {m.stored_size:>12,}  {m.method}")
        print(f"{len(files)} files, {sum(m.size for m in files):,} bytes")
        if problems is not None:
            for prob in problems:
                print(f"PROBLEM: {prob}")
            print("verify: OK" if not problems else f"verify: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
