"""The input digest: what a published object is compared by, to skip what did not change.

SHA-256 over a canonical JSON record of
- every input: its archive path, size, executable bit and the SHA-256 of its content;
- every option that changes the archive's bytes (the doit tasks' options record, with
  named files by base name, which is what the manifest holds; the model path, extra-files
  and export path are left out: where files come from and where the archive goes do not
  change its bytes, and the files' archive paths are in the inputs);
- ``SOURCE_DATE_EPOCH``, mar_tasks' version and the deflate implementation's version.
Mtimes, absolute paths and thread counts never enter it, so two clones on two machines
with the same inputs get the same digest (and, builds being reproducible, the same bytes).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import List, Tuple

from mar_tasks.plan.options import ArchiveOptions
from mar_tasks.plan.selection import Entry
from mar_tasks.formats.input_files import check_unchanged
from mar_tasks.version import __version__, deflate_version


_WHERE = ("model_path", "extra_files", "export_path")
_NAMED_FILES = ("serialized_file", "model_file", "requirements_file", "config_file")


def sha256_file(path: str) -> Tuple[str, int, os.stat_result]:
    """(SHA-256 hex, bytes read, fstat after reading) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    read = 0
    with open(path, "rb", buffering=0) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            read += len(block)
        return h.hexdigest(), read, os.fstat(f.fileno())


def file_sha256(entry: Entry) -> str:
    """An input's SHA-256; ArchiveError if it changed since it was selected."""
    digest, read, st = sha256_file(entry.source)
    check_unchanged(entry, st, read)
    return digest


def input_digest(opts: ArchiveOptions, entries: List[Entry]) -> str:
    """Hash every input once; raise ArchiveError if one changes meanwhile."""
    sha = {e.arcname: file_sha256(e) for e in entries}
    options = {k: os.path.basename(v) if k in _NAMED_FILES and v else v
               for k, v in opts.record().items() if k not in _WHERE}
    record = {
        "inputs": [[e.arcname, e.size, e.executable, sha[e.arcname]] for e in entries],
        "options": options,
        "mar_tasks": __version__,
        "deflate": deflate_version(),
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
