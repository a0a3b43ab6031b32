"""Reading an archive back (zip ``.mar``, ``.tar.gz`` or no-archive folder) without
extracting, and :func:`verify`, the checks ``mar-inspect --verify`` runs.

Nothing here writes, follows a link inside an archive or folder, or opens anything but a
regular file (a FIFO handed to us must not block). Byte-level checks live in
:mod:`mar_tasks.formats.zip_reader` and :mod:`mar_tasks.formats.tgz_reader`; docs/formats.md has the table.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional

from mar_tasks.formats import tgz_reader

from mar_tasks.formats import zip_reader
from mar_tasks.display import name_problem, shown
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.handler_check import (BUILTIN_HANDLERS, check_handler_source, is_path_handler,
                            module_candidates, served_module, split_handler)
from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.formats.ownership_stamp import STAMP_PREFIX
from mar_tasks.regular_files import NotRegularFile, open_regular, read_regular

RUNTIMES_SERVED = {"python", "python2", "python3", "LSP"}
READ_LIMIT = 64 << 20   # manifest and handler source: read into memory, so bounded


@dataclass(frozen=True)
class Member:
    name: str              # as stored (surrogateescape where not UTF-8); show with shown()
    path: str              # relative to the model root (tgz: without "<model>/")
    size: int
    stored_size: int
    method: str            # "deflate", "store", "gzip", "file", "folder", "symbolic link", ...
    is_link: bool = False
    is_dir: bool = False
    special: bool = False  # device, FIFO, socket: never a model file
    kind: str = "file"     # "file", "folder", "symbolic link", "hard link", "FIFO", ...


def _tgz_relative(name: str) -> str:
    """A tgz entry's path below its ``<model-name>/`` folder ("" for the folder itself)."""
    return name.split("/", 1)[1].rstrip("/") if "/" in name else ""


def _open(path: Path) -> "os.stat_result":
    """stat() the archive argument; refuse what is neither a regular file nor a folder."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path} ({exc.strerror}); check the path") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise ArchiveError(f"{path} is not a regular file or a folder (a FIFO, socket or "
                           "device); pass a .mar, .tar.gz or no-archive folder")
    return st


class Archive:
    """A read-only view of one archive; `problems` holds what listing it already found."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.problems: List[str] = []
        self.stamp_digest: Optional[str] = None  # what the stamp should say, if computable
        self.comment = b""
        st = _open(self.path)
        if stat.S_ISDIR(st.st_mode):
            self.kind = "folder"
            self.members = self._list_folder()
            return
        try:
            with open_regular(self.path) as f:
                magic = f.read(2)
                f.seek(0)
                if magic == b"PK":
                    self.kind = "zip"
                    self.layout = zip_reader.read_layout(f, str(self.path))
                    self.comment = self.layout.comment
                    self.members = [self._zip_member(e) for e in self.layout.entries]
                elif magic == b"\x1f\x8b":
                    self.kind = "tgz"
                    found, self.problems, self.stamp_digest, self.comment = \
                        tgz_reader.scan(f, str(self.path))
                    self.members = [Member(e.name, _tgz_relative(e.name), e.size, e.size, "gzip",
                                           e.kind in ("symbolic link", "hard link"),
                                           e.kind == "folder",
                                           e.kind not in ("file", "folder", "symbolic link",
                                                          "hard link"), e.kind)
                                    for e in found]
                else:
                    raise ArchiveError(f"{path} is not a .mar (zip), .tar.gz or no-archive folder")
        except OSError as exc:
            raise ArchiveError(f"cannot read {path} ({exc.strerror}); check the path") from None

    @staticmethod
    def _zip_member(e: zip_reader.ZipEntry) -> Member:
        mode = e.external_attr >> 16
        method = {0: "store", 8: "deflate"}.get(e.method, f"method {e.method}")
        special = bool(mode) and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)
        return Member(e.name, e.name, e.usize, e.csize, method, stat.S_ISLNK(mode),
                      e.name.endswith("/"), special, "special file" if special else "file")

    def _list_folder(self) -> List[Member]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.path):  # never descends into links
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, self.path).replace(os.sep, "/")
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                mode = st.st_mode
                kind = ("symbolic link" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode)
                        else "file" if stat.S_ISREG(mode) else "FIFO" if stat.S_ISFIFO(mode)
                        else "socket or device")
                out.append(Member(rel, rel, st.st_size, st.st_size, kind, stat.S_ISLNK(mode),
                                  stat.S_ISDIR(mode), kind not in ("file", "folder", "symbolic link"),
                                  kind))
        return sorted(out, key=lambda m: m.name)

    def read(self, rel: str) -> bytes:
        """The bytes of the regular member at `rel` (relative to the model root)."""
        member = next((m for m in self.members if m.path == rel and not (m.is_dir or m.is_link
                                                                         or m.special)), None)
        if member is None:
            raise KeyError(rel)
        try:
            if self.kind == "zip":
                entry = next(e for e in self.layout.entries if e.name == member.name)
                with open_regular(self.path) as f:
                    return zip_reader.read_member(f, entry, READ_LIMIT)
            if self.kind == "tgz":
                return self._read_tgz(member.name)
            return read_regular(self.path / rel, READ_LIMIT)
        except NotRegularFile:
            raise ArchiveError(f"{shown(rel)} is not a regular file") from None
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"cannot read {shown(rel)} ({exc})") from None

    def _read_tgz(self, name: str) -> bytes:
        out = bytearray()

        def sink(entry: tgz_reader.TarEntry):
            if entry.name != name:
                return None
            if entry.size > READ_LIMIT:
                raise ArchiveError(f"{shown(name)} is larger than {READ_LIMIT:,} bytes")
            return out.extend

        with open_regular(self.path) as f:
            tgz_reader.scan(f, str(self.path), sink)
        return bytes(out)

    def manifest(self) -> dict:
        try:
            doc = json.loads(self.read(MANIFEST_ARCNAME).decode("utf-8"))
        except KeyError:
            raise ArchiveError(f"{self.path} has no {MANIFEST_ARCNAME}; it is not a model "
                               "archive (or was not written whole)") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{self.path}: {MANIFEST_ARCNAME} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ArchiveError(f"{self.path}: {MANIFEST_ARCNAME} is not a JSON object")
        return doc

    def stamp(self) -> Optional[bytes]:
        """The mar_tasks stamp of a zip or tgz (None for folders and foreign archives)."""
        return self.comment if self.comment.startswith(STAMP_PREFIX) else None


def unsafe_name(name: str) -> Optional[str]:
    """Why an entry name could escape an extraction folder, or None if it is safe."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in name"
    if ".." in PurePosixPath(name).parts:
        return "'..' in path"
    return name_problem(name)


def verify(archive: Archive, digests: Optional[Dict[str, str]] = None) -> List[str]:
    """Every problem that would stop TorchServe, make extraction unsafe, or show that the
    archive is not what was written; [] if none. A zip's entries' SHA-256 go into
    `digests` when it is given (read in the same pass)."""
    problems: List[str] = list(archive.problems)
    seen: Dict[str, int] = {}
    for m in archive.members:
        why = unsafe_name(m.name)
        if why:
            problems.append(f"unsafe entry name {shown(m.name)}: {why}")
        if m.is_link:
            problems.append(f"symlink entry {shown(m.name)}: archives must hold regular files")
        elif m.special:
            problems.append(f"entry {shown(m.name)} is a {m.kind}: archives must hold regular "
                            "files and folders")
        seen[m.name] = seen.get(m.name, 0) + 1
    problems += [f"duplicate entry name {shown(n)} ({c} times)" for n, c in seen.items() if c > 1]
    if archive.kind == "tgz":
        tops = {m.name.split("/", 1)[0] for m in archive.members}
        if len(tops) != 1:
            problems.append("tgz entries must all sit under one <model-name>/ folder, found "
                            + ", ".join(shown(t) for t in sorted(tops)))
    if archive.kind == "zip":
        try:
            with open_regular(archive.path) as f:
                problems += zip_reader.check(f, archive.layout, digests)
        except OSError as exc:
            problems.append(f"cannot read ({exc.strerror})")
    problems += _check_stamp(archive)
    if problems:
        return problems
    try:
        doc = archive.manifest()
    except ArchiveError as exc:
        return [str(exc)]
    return _check_manifest(archive, doc)


def content_digests(archive: Archive) -> Dict[str, str]:
    """SHA-256 of every regular member of a ``.tar.gz``, by path below the model root (one
    streaming pass, constant memory). A zip's come from :func:`verify`'s own pass."""
    import hashlib
    if archive.kind != "tgz":
        raise ArchiveError("entry digests of a zip come from verify(archive, digests)")
    hashers: Dict[str, "hashlib._Hash"] = {}

    def sink(entry: tgz_reader.TarEntry):
        if entry.kind != "file":
            return None
        h = hashers[_tgz_relative(entry.name)] = hashlib.sha256()
        return h.update

    with open_regular(archive.path) as f:
        _, problems, _, _ = tgz_reader.scan(f, str(archive.path), sink)
    if problems:
        raise ArchiveError(problems[0])
    return {k: h.hexdigest() for k, h in hashers.items()}


def verify_archive(path: "str | os.PathLike[str]") -> List[str]:
    """The Python API's ``mar-inspect --verify``: every problem found, [] if none.

    Raises :class:`ArchiveError` (the CLI's one-line message) for what cannot be read as an
    archive at all.
    """
    return verify(Archive(Path(path)))


def _check_stamp(archive: Archive) -> List[str]:
    stamp = archive.stamp()
    if stamp is None:
        return []
    said = stamp[len(STAMP_PREFIX):].decode("ascii", "replace")
    if archive.kind == "zip":
        with open_regular(archive.path) as f:
            actual: Optional[str] = zip_reader.central_digest(f, archive.layout)
    else:
        actual = archive.stamp_digest
    if actual is None or said == actual:
        return []
    return ["the archive does not match its mar_tasks stamp: it was modified after it was written"]


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
        problems.append(f"manifest runtime {shown(str(runtime))} is not one of {sorted(RUNTIMES_SERVED)}")
    files = {m.path for m in archive.members if not (m.is_dir or m.is_link or m.special)}
    for key in ("serializedFile", "modelFile", "requirementsFile", "configFile"):
        if key in model and model[key] not in files:
            problems.append(f"manifest model.{key} = {shown(str(model[key]))} is not in the archive")
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
            return [f"handler module {shown(module)!r} is not in the archive"]
        check_handler_source(archive.read(found), found, function)
    except ArchiveError as exc:
        return [str(exc)]
    return []
