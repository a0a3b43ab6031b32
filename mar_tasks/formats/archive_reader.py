"""Reading an archive back (zip ``.mar``, ``.tar.gz`` or no-archive folder) without
extracting, and :func:`verify`, the checks ``mar-inspect --verify`` runs.

Nothing here writes, follows a link inside an archive or folder, or opens anything but a
regular file (a FIFO handed to us must not block). Byte-level checks live in
:mod:`mar_tasks.formats.zip_reader` and :mod:`mar_tasks.formats.tgz_reader`; docs/formats.md has the table.
"""
from __future__ import annotations

import os
import stat
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from mar_tasks.display import shown
from mar_tasks.errors import ArchiveError
from mar_tasks.formats import folder_reader, gzip_layout, strict_json, tgz_reader, zip_reader
from mar_tasks.plan import limits
from mar_tasks.plan.entry_names import listing_problems, name_problem_canonical, unsafe_name
from mar_tasks.formats.ownership_stamp import (KINDS, STAMP_PREFIX, TGZ_KIND, ContentDigest, claims_mar_tasks,
                                              stamp_kind, stamp_problem)
from mar_tasks.plan.handler_check import (BUILTIN_HANDLERS, check_handler_source, check_import_order,
                                          is_path_handler,
                                          module_candidates, served_module, split_handler)
from mar_tasks.plan.manifest import MANIFEST_ARCNAME
from mar_tasks.regular_files import NotRegularFile, open_regular

__all__ = ["Archive", "Member", "verify", "verify_archive", "content_digests", "unsafe_name"]
RUNTIMES_SERVED = {"python", "python2", "python3", "LSP"}
MAX_SHOWN = 20   # problems listed one per line; past that, one line counts the rest


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
        if not str(path):
            raise ArchiveError("the archive path is empty; name a .mar, .tar.gz or no-archive folder")
        self.path = Path(path)
        # A link the user named is followed once, here, whether it leads to a file or a
        # folder; links inside an archive or folder never are.
        self._file = Path(os.path.realpath(self.path)) if self.path.is_symlink() else self.path
        self.problems: List[str] = []
        self.stamp_digest: Optional[str] = None  # what the stamp should say, if computable
        self.comment = b""
        st = _open(self.path)
        if stat.S_ISDIR(st.st_mode):
            self.kind = "folder"
            try:
                self._root_fd = os.open(self._file, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as exc:
                raise ArchiveError(f"cannot read {path} ({exc.strerror}); check the path") from None
            weakref.finalize(self, os.close, self._root_fd)
            try:
                self.members = self._list_folder()
            except OSError as exc:
                raise ArchiveError(f"cannot read {path} ({exc.strerror}); check the path") from None
            return
        try:
            with open_regular(self._file) as f:
                magic = f.read(2)
                f.seek(0)
                if magic == b"PK":
                    self.kind = "zip"
                    self.layout = zip_reader.read_layout(f, str(self.path))
                    self.problems += self.layout.problems
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
        is_dir = e.name.endswith("/")
        return Member(e.name, e.name.rstrip("/") if is_dir else e.name, e.usize, e.csize, method,
                      stat.S_ISLNK(mode), is_dir, special,
                      "special file" if special else "folder" if is_dir else "file")

    def _list_folder(self) -> List[Member]:
        out = []
        for rel, st in folder_reader.walk(self._root_fd):  # never follows a link
            kind = folder_reader.kind_of(st.st_mode)
            out.append(Member(rel, rel, st.st_size, st.st_size, kind, kind == "symbolic link",
                              kind == "folder", kind not in ("file", "folder", "symbolic link"),
                              kind))
        return sorted(out, key=lambda m: m.name)

    def read(self, rel: str, limit: int = limits.MAX_MANIFEST_BYTES) -> bytes:
        """The bytes of the regular member at `rel` (relative to the model root), at most
        `limit` of them (more: ArchiveError)."""
        member = next((m for m in self.members if m.path == rel and not (m.is_dir or m.is_link
                                                                         or m.special)), None)
        if member is None:
            raise KeyError(rel)
        if member.size > limit:
            raise ArchiveError(f"{shown(rel)} is larger than {limit:,} bytes; --verify reads "
                               "at most that")
        try:
            if self.kind == "zip":
                entry = next(e for e in self.layout.entries if e.name == member.name)
                with open_regular(self._file) as f:
                    return zip_reader.read_member(f, entry, limit)
            if self.kind == "tgz":
                with open_regular(self._file) as f:
                    data = tgz_reader.read_entry(f, str(self.path), member.name, limit)
                if data is None:
                    raise KeyError(rel)
                return data
            return folder_reader.read_file(self._root_fd, rel, limit)
        except NotRegularFile:
            raise ArchiveError(f"{shown(rel)} is not a regular file") from None
        except (OSError, ValueError) as exc:
            raise ArchiveError(f"cannot read {shown(rel)} ({exc})") from None

    def manifest(self) -> dict:
        try:
            raw = self.read(MANIFEST_ARCNAME, limits.MAX_MANIFEST_BYTES)
        except KeyError:
            raise ArchiveError(f"{self.path} has no {MANIFEST_ARCNAME}; it is not a model "
                               "archive (or was not written whole)") from None
        try:
            doc = strict_json.loads(raw)
        except ValueError as exc:
            raise ArchiveError(f"{self.path}: {MANIFEST_ARCNAME} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ArchiveError(f"{self.path}: {MANIFEST_ARCNAME} is not a JSON object")
        return doc

    def stamp(self) -> Optional[bytes]:
        """The mar_tasks stamp of a zip or tgz (None for folders and foreign archives)."""
        return self.comment if self.comment.startswith(STAMP_PREFIX) else None


def _name_problems(archive: Archive) -> List[str]:
    """Names every reader extracts to one path each, and no path twice (entry_names)."""
    problems: List[str] = []
    top = archive.members[0].name.split("/", 1)[0] if archive.members else ""
    paths = []
    for m in archive.members:
        stored = m.name + "/" if archive.kind == "folder" and m.is_dir else m.name
        why = unsafe_name(stored)
        if why:
            problems.append(f"unsafe entry name {shown(m.name)}: {why}")
            continue
        if m.is_link:
            link = "hard link" if m.kind == "hard link" else "symlink"
            problems.append(f"{link} entry {shown(m.name)}: archives must hold regular files")
        elif m.special:
            problems.append(f"entry {shown(m.name)} is a {m.kind}: archives must hold regular "
                            "files and folders")
        else:
            why = name_problem_canonical(stored, m.is_dir)
            if why:
                problems.append(f"entry name {shown(m.name)}: {why}")
                continue
            if m.is_dir and m.size and archive.kind == "zip":
                problems.append(f"folder entry {shown(m.name)} carries data")
        if archive.kind == "tgz" and not (stored.startswith(top + "/") and
                                          (m.path or (m.is_dir and stored == top + "/"))):
            problems.append(f"tgz entries must all sit under one <model-name>/ folder: "
                            f"{shown(m.name)} does not (TorchServe strips up to the first '/')")
            continue
        paths.append((stored.rstrip("/"), m.is_dir))
    return problems + listing_problems(paths)


def file_name_problem(archive: Archive) -> Optional[str]:
    """TorchServe 0.12 unzips a file whose name ends in .mar and untars anything else."""
    named_mar = archive.path.name.endswith(".mar")
    if archive.kind == "zip" and not named_mar:
        return (f"{archive.path.name} is a zip but not named *.mar: TorchServe would read it as "
                ".tar.gz; rename it to end in .mar")
    if archive.kind == "tgz" and named_mar:
        return (f"{archive.path.name} is a .tar.gz named *.mar: TorchServe would read it as a "
                "zip; rename it to end in .tar.gz")
    return None


def _gzip_header_problem(archive: Archive) -> Optional[str]:
    """A stamped tgz's stamp covers every byte after its gzip header; the header's fixed
    fields before the stamp must then be the ones the writer writes."""
    if archive.kind != "tgz":
        return None
    ours = gzip_layout.fixed_header(gzip_layout.FCOMMENT)
    try:
        with open_regular(archive._file) as f:
            head = f.read(len(ours))
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if head != ours:
        return ("the gzip header's time, flags or OS are not the ones mar_tasks writes: it was "
                "modified after it was written")
    return None


def verify(archive: Archive, digests: Optional[Dict[str, str]] = None) -> List[str]:
    """Every problem that would stop TorchServe, make extraction unsafe, let two readers
    extract different things, or show that the archive is not what was written; [] if none.
    A zip's entries' SHA-256 go into `digests` when it is given (read in the same pass)."""
    problems: List[str] = list(archive.problems) + _name_problems(archive)
    why = file_name_problem(archive)
    if why:
        problems.insert(0, why)
    stamp = archive.stamp()
    kinds = KINDS if archive.kind == "zip" else (TGZ_KIND,)   # what we write or wrote on each
    kind = stamp_kind(stamp) if stamp is not None else None
    # hashed only when it is checked, as the stamp's kind defines (ownership_stamp)
    content = ContentDigest(kind) if kind in kinds else None
    if archive.kind == "zip" and not problems:
        try:
            with open_regular(archive._file) as f:
                problems += zip_reader.check(f, archive.layout, digests, content)
        except OSError as exc:
            problems.append(f"cannot read ({exc.strerror})")
        if not problems and content is not None:
            archive.stamp_digest = content.hexdigest(archive.layout.index_digest)
    if stamp is not None and not problems:
        why = stamp_problem(stamp, archive.stamp_digest, kinds) or _gzip_header_problem(archive)
        if why:
            problems.append(why)
    if len(problems) > MAX_SHOWN:  # an archive of 100,000 bad names: the first ones say it
        problems = problems[:MAX_SHOWN] + [f"... and {len(problems) - MAX_SHOWN:,} more problems"]
    if problems:
        return problems
    try:
        doc = archive.manifest()
    except ArchiveError as exc:
        return [str(exc)]
    if stamp is None and archive.kind in ("zip", "tgz") and claims_mar_tasks(doc):
        # (else a flipped bit in the stamp's prefix, or a tool that dropped the comment,
        # would pass such an archive as a foreign one, its data unchecked)
        return ["the manifest says mar_tasks wrote this archive, but it carries no mar_tasks "
                "stamp: another tool rewrote it or its comment was damaged; rebuild it"]
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

    with open_regular(archive._file) as f:
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


MODEL_STRINGS = ("modelName", "handler", "modelVersion", "serializedFile", "modelFile",
                 "requirementsFile", "configFile")


def _json_type(value: object) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _check_manifest(archive: Archive, doc: dict) -> List[str]:
    problems = []
    model = doc.get("model")
    if not isinstance(model, dict):
        return ["manifest has no \"model\" object"]
    # Types first: TorchServe reads these as strings, and a list or object is no file name.
    for where, key, value in [("", "runtime", doc.get("runtime"))] + \
            [("model.", k, model.get(k)) for k in MODEL_STRINGS]:
        if value is not None and not isinstance(value, str):
            return [f"manifest {where}{key} must be a string, not {_json_type(value)}"]
    for key in ("modelName", "handler", "modelVersion"):
        if not model.get(key):
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
        check_import_order(module, found, files)
        check_handler_source(archive.read(found, limits.MAX_HANDLER_BYTES), found, function)
    except ArchiveError as exc:
        return [str(exc)]
    return []
