"""The one place that decides which files go into an archive.

The engine archives exactly :func:`select_files`'s entries and the doit task depends on
exactly the same entries' sources, so the two can never disagree.

Rules (see README, "What goes into an archive"):
- everything under the model path except :mod:`mar_tasks.plan.exclusions`' names, the output
  itself, and a ``MAR-INF`` folder at its top (an error: that name is reserved);
- ``--serialized-file``, ``--model-file``, ``-r``, ``-c`` and a path-like handler at the
  archive root under their base names; ``--extra-files`` files at the root and folders as
  ``<folder name>/...`` with their structure kept;
- symlinks are followed when they point inside the folder being walked; one pointing
  outside, a dangling one or a loop is an error (nothing is pulled in silently);
- empty folders are not stored (a zip holds files; TorchServe needs nothing else);
- no files at all is an archive of the manifest alone, as torch-model-archiver builds for a
  built-in handler (a handler of the user's own is a file, so it is never empty then).
"""
from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from mar_tasks.display import name_problem
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.archive_limits import check_archive_size, check_entry_names
from mar_tasks.plan.exclusions import is_excluded_dir, is_excluded_file
from mar_tasks.plan.handler_check import HandlerLocation, locate_handler
from mar_tasks.plan.name_collisions import listing_problems
from mar_tasks.plan.stat_checks import StatCheck, file_check, folder_check
from mar_tasks.plan.options import ArchiveOptions
from mar_tasks.plan.output_guard import check_name_fits, check_output_apart, realpath

MAR_INF = "MAR-INF"


class Entry(NamedTuple):
    """One file to archive: where it goes and where it is read from. (A NamedTuple: doit
    loads one per input file on every run, and a frozen dataclass costs 3x to create.)"""

    arcname: str      # relative POSIX path inside the archive
    source: str       # absolute path on disk
    size: int
    mtime_ns: int
    mtime: float      # st_mtime, as doit's MD5 checker records it
    executable: bool  # owner-executable: archived as 0o755, else 0o644


@dataclass
class Selection:
    """The sorted entries of one archive plus what the manifest needs to know of them."""

    entries: List[Entry]
    handler: HandlerLocation
    manifest_files: Dict[str, str] = field(default_factory=dict)
    # (what, path) of every input root: the model path, extra folders, each named file
    inputs: List[Tuple[str, str]] = field(default_factory=list)
    # What the listing depends on, for :mod:`mar_tasks.tasks.remembered_listings`: the stat check of every
    # folder read and every file named on its own; None when it cannot be told from stat checks
    # (a symlink, a wildcard, a handler found by searching).
    checks: Optional[Tuple[StatCheck, ...]] = None


def _utf8(name: str, path: str = "") -> str:
    """`name` (one path component) if it can be archived: the verifier's rule
    (:func:`mar_tasks.display.name_problem`): valid UTF-8, no control or invisible
    characters (a newline or escape sequence in a name is a terminal injection)."""
    if name.isprintable():  # the common case, decided in C
        return name
    why = name_problem(name)
    if why:
        shown = (path or name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        fix = "rename it (archives store UTF-8 names)" if "UTF-8" in why else "rename it"
        raise ArchiveError(f"file name {shown!r} {why}; {fix}")
    return name


def _entry(arcname: str, source: str, st: os.stat_result) -> Entry:
    return Entry(arcname, source, st.st_size, st.st_mtime_ns, st.st_mtime,
                 bool(st.st_mode & stat.S_IXUSR))


def _stat_input(path: Path, what: str, folder: bool = False,
                missing_fix: str = "check the path") -> os.stat_result:
    """stat() a named input, turning every failure into a one-line ArchiveError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArchiveError(f"{what} {path} does not exist; {missing_fix}") from None
    except OSError as exc:
        raise ArchiveError(f"{what} {path} cannot be read ({exc.strerror}); fix its permissions") from None
    if folder and not stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"{what} {path} is not a folder; pass the folder that holds the model files")
    if not folder and not stat.S_ISREG(st.st_mode):
        raise ArchiveError(f"{what} {path} is not a regular file; name a file")
    return st


def walk_folder(root: Path, prefix: str = "", top_level_mar_inf_is_error: bool = False,
                checks: Optional[List[Optional[StatCheck]]] = None) -> List[Entry]:
    """Every archivable file under `root`, named `prefix` + relative path.

    One ``scandir`` pass, one ``stat`` per file, no reads: doit calls this at load time.
    (Our own output never lies under `root`: :mod:`mar_tasks.plan.output_guard` refuses that.)
    `checks` gets each folder's stat check, taken before it is read, and None for a symlink.
    """
    root_real = realpath(str(root))
    out: List[Entry] = []
    # Stack of (folder path, archive prefix, chain of (dev, ino) of folders above it).
    stack: List[Tuple[str, str, Tuple[Tuple[int, int], ...], os.stat_result]] = []
    st_root = os.stat(root)
    stack.append((str(root), prefix, ((st_root.st_dev, st_root.st_ino),), st_root))
    while stack:
        folder, arc_prefix, chain, st_folder = stack.pop()
        if checks is not None:
            checks.append(folder_check(folder, st_folder))
        try:
            with os.scandir(folder) as it:
                items = list(it)
        except FileNotFoundError:
            raise ArchiveError(f"folder {folder} disappeared while being read; run again") from None
        except OSError as exc:
            raise ArchiveError(f"folder {folder} cannot be read ({exc.strerror}); fix its permissions") from None
        for item in items:
            name = item.name
            path = item.path
            try:
                is_link = item.is_symlink()
                is_dir = item.is_dir()  # follows links
            except OSError as exc:  # ELOOP: a link to itself or a cycle of links
                raise ArchiveError(
                    f"symlink {path} cannot be followed ({exc.strerror}); remove or fix it"
                ) from None
            if is_dir and is_excluded_dir(name) or not is_dir and is_excluded_file(name):
                continue
            _utf8(name, path)
            if is_link:
                if checks is not None:
                    checks.append(None)  # what a link points to is not in any folder's stat check
                target = os.path.realpath(path)
                if not os.path.exists(path):
                    raise ArchiveError(
                        f"symlink {path} points to a missing file or is a loop; remove or fix it"
                    )
                if target != root_real and not target.startswith(root_real + os.sep):
                    raise ArchiveError(
                        f"symlink {path} points outside {root} (to {target}); copy the file "
                        "in, or pass it with --extra-files"
                    )
            try:
                st = item.stat()
            except FileNotFoundError:
                raise ArchiveError(f"file {path} disappeared while being read; run again") from None
            except OSError as exc:
                raise ArchiveError(f"{path} cannot be read ({exc.strerror}); check it") from None
            arcname = arc_prefix + name
            if stat.S_ISDIR(st.st_mode):
                if top_level_mar_inf_is_error and name == MAR_INF and folder == str(root):
                    raise ArchiveError(
                        f"{path}: MAR-INF is reserved for the archive's manifest; "
                        "rename or remove that folder"
                    )
                key = (st.st_dev, st.st_ino)
                if key in chain:
                    raise ArchiveError(f"symlink {path} makes a loop; remove it")
                stack.append((path, arcname + "/", chain + (key,), st))
            elif stat.S_ISREG(st.st_mode):
                out.append(_entry(arcname, path, st))
            else:
                raise ArchiveError(f"{path} is not a regular file (device, FIFO or socket); remove it")
    return out


def _extra_paths(patterns: Tuple[Path, ...]) -> List[Path]:
    """Expand ``--extra-files`` items; a wildcard must match something."""
    out: List[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text))
            if not matches:
                raise ArchiveError(f"extra files pattern {text} matches nothing; fix the pattern")
            out.extend(Path(m) for m in matches)
        elif not os.path.lexists(text):
            raise ArchiveError(f"extra file {text} does not exist; check --extra-files")
        else:
            out.append(Path(text))
    return out


def select_files(opts: ArchiveOptions) -> Selection:
    """Decide the archive's entries for resolved options (see module docstring)."""
    entries: Dict[str, Entry] = {}
    inputs: List[Tuple[str, str]] = []
    checks: List[Optional[StatCheck]] = []

    def add(entry: Entry, origin: str) -> None:
        if entry.arcname.split("/")[0] == MAR_INF:
            raise ArchiveError(f"{origin} would be stored under MAR-INF/, which is reserved; rename it")
        old = entries.get(entry.arcname)
        if old is not None:
            if os.path.samefile(old.source, entry.source):
                return  # the same file named twice (e.g. --serialized-file inside the model path)
            raise ArchiveError(
                f"two different files would be stored as {entry.arcname}: {old.source} and "
                f"{entry.source}; rename one of them"
            )
        entries[entry.arcname] = entry

    def add_file(path: Path, what: str) -> str:
        st = _stat_input(path, what)
        checks.append(file_check(str(path), st))
        add(_entry(_utf8(path.name), str(path), st), what)
        inputs.append((what, str(path)))
        return path.name

    if opts.model_path is not None:
        mp = Path(opts.model_path)
        _stat_input(mp, "model path", folder=True, missing_fix="pass --model-path FOLDER")
        for e in walk_folder(mp, "", True, checks):
            entries[e.arcname] = e
        inputs.append(("model path", str(mp)))

    manifest_files: Dict[str, str] = {}
    for key, path, what in (
        ("serializedFile", opts.serialized_file, "serialized file"),
        ("modelFile", opts.model_file, "model file"),
        ("requirementsFile", opts.requirements_file, "requirements file"),
        ("configFile", opts.config_file, "config file"),
    ):
        if path is not None:
            manifest_files[key] = add_file(Path(path), what)

    if any(ch in str(p) for p in opts.extra_files for ch in "*?["):
        checks.append(None)  # what a wildcard matches is not in a stat check of ours
    for path in _extra_paths(opts.extra_files):
        if path.is_dir():
            for e in walk_folder(path, _utf8(path.resolve().name) + "/", checks=checks):
                add(e, e.source)
            inputs.append(("extra files folder", str(path)))
        else:
            add_file(path, "extra file")

    search = [d for d in (opts.base_dir, opts.model_path) if d is not None]
    location = locate_handler(opts.handler, opts.runtime, set(entries), search)
    if location.added_file is not None:
        add_file(location.added_file, "handler file")
        if location.searched_past:
            checks.append(None)

    check_archive_size(entries)
    check_entry_names(entries, opts.model_name + "/" if opts.archive_format == "tgz" else "")
    collisions = listing_problems((arcname, False) for arcname in entries)
    if collisions:
        raise ArchiveError(f"{collisions[0]}; rename one of them")
    check_name_fits(opts.output_path)
    check_output_apart(opts.output_path, inputs)
    return Selection(sorted(entries.values(), key=lambda e: e.arcname), location, manifest_files,
                     inputs, None if None in checks else tuple(checks))  # type: ignore[arg-type]
