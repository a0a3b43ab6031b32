"""What ``mar-inspect --verify`` reads at most, so that time stays linear in the archive's
size and memory bounded whatever the archive holds (docs/formats.md lists them). Past a
limit the archive gets one problem line; nothing is read further. The writer refuses an
archive past the limits on entries and names first (:mod:`.archive_limits`), so that our
own output always verifies."""
from __future__ import annotations

from mar_tasks.plan.handler_check import MAX_HANDLER_BYTES  # the handler, parsed with ast

MAX_ENTRIES = 200_000          # files and folders, the manifest and MAR-INF/ included
MAX_INDEX_BYTES = 64 << 20     # a zip's central directory; a tgz's names together
INDEX_BYTES_PER_ENTRY = 46 + 28  # a central directory record and its largest zip64 field
# Names are kept in memory as str, one byte per character when ASCII but up to four (one
# emoji makes the whole name four): names together may take at most this, counted as below.
MAX_NAME_MEMORY = 64 << 20


def name_memory(name: str) -> int:
    """What a name may take in memory as a str: its length, four times that unless ASCII."""
    return len(name) if name.isascii() else 4 * len(name)


__all__ = ["INDEX_BYTES_PER_ENTRY", "MAX_NAME_MEMORY", "name_memory", "MAX_ENTRIES", "MAX_NAME_BYTES", "MAX_COMPONENT_BYTES",
            "MAX_INDEX_BYTES", "MAX_DEPTH", "MAX_EXTENSION_HEADER",
           "MAX_TAR_PADDING", "MAX_MANIFEST_BYTES", "MAX_JSON_DEPTH", "MAX_HANDLER_BYTES"]

# One entry name: PATH_MAX on Linux is 4,096 with the folder extracted into and the NUL, so
# a name of 4,096 bytes fails in every reader ("File name too long"); 256 are left for that folder.
MAX_NAME_BYTES = 4096 - 256
MAX_COMPONENT_BYTES = 255      # one file or folder name in it (NAME_MAX)
MAX_DEPTH = 256                # folder levels (in names and in a no-archive folder)
MAX_EXTENSION_HEADER = 64 << 10  # one pax extension header's data
MAX_TAR_PADDING = 10240        # zero bytes after a tar's two end blocks (tarfile pads to 10 KiB)
MAX_MANIFEST_BYTES = 1 << 20   # MAR-INF/MANIFEST.json
MAX_JSON_DEPTH = 64            # nesting in the manifest
