"""Reading an archive back (zip ``.mar``, ``.tar.gz`` or no-archive folder) without extracting.

Used by ``mar-inspect`` and its ``--verify``; nothing here writes to disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional

from .errors import ArchiveError
from .handler_check import (BUILTIN_HANDLERS, check_handler_source, is_path_handler,
                            module_candidates, served_module, split_handler)
from .manifest import MANIFEST_ARCNAME
from .ownership import STAMP_PREFIX, stamp_of, zip_end_record

RUNTIMES_SERVED = {"python", "python2", "python3", "LSP"}


@dataclass(frozen=True)
class Member:
    name: str              # as stored
    path: str              # relative to the model root (tgz: without "<model>/")
    size: int
    stored_size: int
    method: str            # "deflate", "store", "gzip", "file", "dir", "symlink", ...
    is_link: bool = False
    is_dir: bool = False


def _tgz_relative(name: str) -> str:
    """A tgz entry's path below its ``<model-name>/`` folder ("" for the folder itself)."""
    return name.split("/", 1)[1] if "/" in name else ""


class Archive:
    """A read-only view of one archive."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.kind = "folder"
        else:
            try:
                with open(self.path, "rb") as f:
                    magic = f.read(2)
            except OSError as exc:
                raise ArchiveError(f"cannot read {path} ({exc.strerror}); check the path") from None
            if magic == b"PK":
                self.kind = "zip"
            elif magic == b"\x1f\x8b":
                self.kind = "tgz"
            else:
                raise ArchiveError(f"{path} is not a .mar (zip), .tar.gz or no-archive folder")
        self.members = self._list()

    def _list(self) -> List[Member]:
        if self.kind == "zip":
            try:
                with zipfile.ZipFile(self.path) as z:
                    infos = z.infolist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise ArchiveError(f"{self.path} is not a readable zip ({exc})") from None
            return [
                Member(i.filename, i.filename, i.file_size, i.compress_size,
                       {0: "store", 8: "deflate"}.get(i.compress_type, str(i.compress_type)),
                       stat.S_ISLNK(i.external_attr >> 16), i.is_dir())
                for i in infos
            ]
        if self.kind == "tgz":
            out = []
            try:
                with tarfile.open(self.path, "r:gz") as t:
                    for m in t:
                        out.append(Member(m.name, _tgz_relative(m.name), m.size, m.size, "gzip",
                                          m.issym() or m.islnk(), m.isdir()))
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ArchiveError(f"{self.path} is not a readable .tar.gz ({exc})") from None
            return out
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, self.path).replace(os.sep, "/")
                st = os.lstat(full)
                link = stat.S_ISLNK(st.st_mode)
                out.append(Member(rel, rel, st.st_size, st.st_size, "symlink" if link else "file",
                                  link, stat.S_ISDIR(st.st_mode)))
        return sorted(out, key=lambda m: m.name)

    def read(self, rel: str) -> bytes:
        """The bytes of the member at `rel` (relative to the model root)."""
        if self.kind == "zip":
            with zipfile.ZipFile(self.path) as z:
                return z.read(rel)
        if self.kind == "tgz":
            with tarfile.open(self.path, "r:gz") as t:
                for m in t:
                    if m.isfile() and rel and _tgz_relative(m.name) == rel:
                        f = t.extractfile(m)
                        assert f is not None
                        return f.read()
            raise KeyError(rel)
        target = (self.path / rel).resolve()
        if not str(target).startswith(str(self.path.resolve()) + os.sep):
            raise KeyError(rel)
        return target.read_bytes()

    def manifest(self) -> dict:
        try:
            doc = json.loads(self.read(MANIFEST_ARCNAME).decode("utf-8"))
        except KeyError:
            raise ArchiveError(f"{self.path} has no {MANIFEST_ARCNAME}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{self.path}: {MANIFEST_ARCNAME} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ArchiveError(f"{self.path}: {MANIFEST_ARCNAME} is not a JSON object")
        return doc

    def stamp(self) -> Optional[bytes]:
        """The mar_tasks stamp of a zip or tgz (None for folders and foreign archives)."""
        return None if self.kind == "folder" else stamp_of(self.path)


def central_directory_digest(path: Path) -> Optional[str]:
    """sha256 of a zip's central directory bytes (what our zip stamp records)."""
    record = zip_end_record(path)
    if record is None:
        return None
    (_, _, _, _, count, cd_size, cd_off, _), _, before = record
    with open(path, "rb") as f:
        if cd_off == 0xFFFFFFFF or cd_size == 0xFFFFFFFF or count == 0xFFFF:
            loc = before.rfind(b"PK\x06\x07")
            if loc < 0:
                return None
            (z64_at,) = struct.unpack_from("<Q", before, loc + 8)
            f.seek(z64_at)
            cd_size, cd_off = struct.unpack_from("<QQ", f.read(56), 40)
        f.seek(cd_off)
        h = hashlib.sha256()
        left = cd_size
        while left:
            block = f.read(min(left, 1 << 20))
            if not block:
                return None
            h.update(block)
            left -= len(block)
        return h.hexdigest()


def unsafe_name(name: str) -> Optional[str]:
    """Why an entry name could escape an extraction folder, or None if it is safe."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in name"
    if ".." in PurePosixPath(name).parts:
        return "'..' in path"
    return None


def verify(archive: Archive) -> List[str]:
    """Every problem that would stop TorchServe, or make extraction unsafe; [] if none."""
    problems: List[str] = []
    seen: Dict[str, int] = {}
    for m in archive.members:
        why = unsafe_name(m.name)
        if why:
            problems.append(f"unsafe entry name {m.name!r}: {why}")
        if m.is_link:
            problems.append(f"symlink entry {m.name!r}: archives must hold regular files")
        seen[m.name] = seen.get(m.name, 0) + 1
    problems += [f"duplicate entry name {n!r} ({c} times)" for n, c in seen.items() if c > 1]
    if archive.kind == "tgz":
        tops = {m.name.split("/", 1)[0] for m in archive.members}
        if len(tops) != 1:
            problems.append(f"tgz entries must all sit under one <model-name>/ folder, found {sorted(tops)}")
    problems += _check_contents(archive)
    if problems:
        return problems
    try:
        doc = archive.manifest()
    except ArchiveError as exc:
        return [str(exc)]
    problems += _check_manifest(archive, doc)
    stamp = archive.stamp()
    if stamp is not None and archive.kind == "zip":  # a tgz stamp needs the raw tar headers
        digest = central_directory_digest(archive.path)
        if stamp[len(STAMP_PREFIX):].decode("ascii", "replace") != digest:
            problems.append("zip central directory does not match the mar_tasks stamp: the "
                            "archive was modified after it was written")
    return problems


def _check_contents(archive: Archive) -> List[str]:
    """Read every byte: zip member CRCs and the gzip CRC are checked as a side effect."""
    try:
        if archive.kind == "zip":
            with zipfile.ZipFile(archive.path) as z:
                for info in z.infolist():
                    with z.open(info) as f:
                        while f.read(1 << 20):
                            pass
        elif archive.kind == "tgz":
            with tarfile.open(archive.path, "r:gz") as t:
                for m in t:
                    if m.isfile():
                        f = t.extractfile(m)
                        while f is not None and f.read(1 << 20):
                            pass
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, OSError, EOFError, ValueError) as exc:
        return [f"corrupt data: {exc}"]
    return []


def _check_manifest(archive: Archive, doc: dict) -> List[str]:
    problems = []
    model = doc.get("model")
    if not isinstance(model, dict):
        return ["manifest has no \"model\" object"]
    for key in ("modelName", "handler", "modelVersion"):
        if not isinstance(model.get(key), str) or not model.get(key):
            problems.append(f"manifest model.{key} is missing (TorchServe needs it)")
    runtime = doc.get("runtime")
    if runtime not in RUNTIMES_SERVED:
        problems.append(f"manifest runtime {runtime!r} is not one of {sorted(RUNTIMES_SERVED)}")
    files = {m.path for m in archive.members if not m.is_dir}
    for key in ("serializedFile", "modelFile", "requirementsFile", "configFile"):
        if key in model and model[key] not in files:
            problems.append(f"manifest model.{key} = {model[key]!r} is not in the archive")
    handler = model.get("handler")
    if isinstance(handler, str) and handler and runtime != "LSP":
        problems += _check_archived_handler(archive, handler, files)
    return problems


def _check_archived_handler(archive: Archive, handler: str, files: set) -> List[str]:
    try:
        module, function = split_handler(handler)
        if is_path_handler(module):  # TorchServe imports the file's stem from the root
            module = served_module(module)
        found = next((c for c in module_candidates(module) if c in files), None)
        if found is None:
            if module in BUILTIN_HANDLERS and function is None:
                return []
            return [f"handler module {module!r} is not in the archive"]
        check_handler_source(archive.read(found), found, function)
    except ArchiveError as exc:
        return [str(exc)]
    return []
