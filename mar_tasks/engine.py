"""The archive engine: options in, one complete archive (or folder) out.

Both the ``mar-archive`` command and the doit tasks call :func:`build_archive`; it is the
only code that writes archives.
"""
from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from mar_tasks import atomic
from mar_tasks.allocator import keep_freed_memory
from mar_tasks.plan.build_time import build_epoch, zip_date_time
from mar_tasks.formats.deflate import ParallelDeflate
from mar_tasks.errors import ArchiveError, OutputExistsError, from_os_error
from mar_tasks.formats.carry_over import OldZip, Reuse, old_folder_file, open_old_zip
from mar_tasks.formats.folder_writer import write_folder
from mar_tasks.plan.handler_check import check_handler_source
from mar_tasks.plan.manifest import MANIFEST_ARCNAME, make_manifest
from mar_tasks.plan.options import ArchiveOptions, validate_values
from mar_tasks.formats.ownership_stamp import is_ours
from mar_tasks.plan.selection import Entry, Selection, select_files
from mar_tasks.formats.input_files import check_all_unchanged
from mar_tasks.formats.tar_writer import write_tgz
from mar_tasks.formats.zip_writer import ZipWriter

ProgressFactory = Callable[[int], Optional[Callable[[int], None]]]


@dataclass(frozen=True)
class BuildResult:
    path: Path
    files: int
    input_bytes: int
    stamp: bytes
    entries: Tuple[Entry, ...] = ()  # the inputs as they were read
    carried: Tuple[str, ...] = ()    # entries carried over from the output replaced (rebuilds)
    digests: Tuple[Tuple[str, str], ...] = ()  # a zip's entries' digests of their stored bytes


def check_handler(sel: Selection) -> None:
    """Parse the handler module that will be archived and check its entry point; a
    fallback TorchServe will take is shown as a warning."""
    loc = sel.handler
    if loc.module_arcname is None:
        return  # a built-in handler or the LSP runtime
    entry = next(e for e in sel.entries if e.arcname == loc.module_arcname)
    try:
        source = Path(entry.source).read_bytes()
    except OSError as exc:
        raise ArchiveError(f"cannot read handler {entry.source} ({exc.strerror}); check it") from None
    note = check_handler_source(source, loc.module_arcname, loc.function)
    if note:
        warnings.warn(note, stacklevel=2)


def check_target(opts: ArchiveOptions, replace_own: bool) -> None:
    """Refuse to replace an existing output unless forced (or, for doit, it is ours).

    Whatever the force, an archive never replaces a folder and a no-archive folder never
    replaces anything but a folder: what is in the way is named instead.
    """
    target = opts.output_path
    export = Path(opts.export_path)
    if os.path.lexists(export) and not export.is_dir():
        raise ArchiveError(f"export path {export} is not a folder; pass --export-path FOLDER")
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    want_dir = opts.archive_format == "no-archive"
    if stat.S_ISDIR(mode) != want_dir:
        what = "a folder" if stat.S_ISDIR(mode) else "a file, not a folder"
        raise ArchiveError(
            f"{target} is {what}, so it is not replaced even with -f/--force; move it "
            "away, or choose another --export-path or --model-name"
        )
    if opts.force or replace_own and is_ours(target):
        return
    raise OutputExistsError(str(target))


def make_folders(folder: Path) -> List[Path]:
    """Create `folder` and its missing parents; return the ones created, outermost first."""
    missing: List[Path] = []
    for f in (folder, *folder.parents):
        if os.path.lexists(f):
            break
        missing.append(f)
    made: List[Path] = []
    for f in reversed(missing):
        try:
            f.mkdir()
        except FileExistsError:  # another build made it meanwhile: not ours to remove
            continue
        made.append(f)
    return made


def remove_made_folders(made: List[Path]) -> None:
    """Undo :func:`make_folders`: remove what it created, innermost first, if still empty."""
    for f in reversed(made):
        try:
            os.rmdir(f)
        except OSError:
            return


@dataclass(frozen=True)
class Plan:
    """A build decided but not written: the checked options, files, time and manifest."""

    opts: ArchiveOptions
    sel: Selection
    epoch: int
    manifest: bytes


def plan_build(opts: ArchiveOptions, replace_own: bool = False, check_output: bool = True) -> Plan:
    """Every check a build makes before writing (values, files, handler, target).

    `check_output` False skips the check of what is at the target: for a caller that
    writes the planned archive elsewhere (``doit publish`` never touches the local one).
    """
    if opts.base_dir is None:
        opts = opts.resolved(Path.cwd())
    validate_values(opts)
    try:
        sel = select_files(opts)
        check_handler(sel)
        if check_output:
            check_target(opts, replace_own)
    except OSError as exc:  # e.g. a parent folder we may not enter
        raise from_os_error(exc) from None
    epoch = build_epoch()
    return Plan(opts, sel, epoch, make_manifest(opts, sel.handler.manifest_value, sel.manifest_files, epoch))


def build_archive(opts: ArchiveOptions, *, replace_own: bool = False,
                  progress: Optional[ProgressFactory] = None,
                  threads: Optional[int] = None, tune_malloc: bool = False,
                  reuse: Optional[Reuse] = None) -> BuildResult:
    """Validate `opts` (resolved), select files, and write the archive atomically.

    `replace_own` lets an existing output written by mar_tasks be replaced without force
    (the doit tasks' rule); the other arguments are :func:`write_plan`'s.
    """
    plan = plan_build(opts, replace_own)  # (paths as given are taken against the cwd)
    return write_plan(plan, progress=progress, threads=threads, tune_malloc=tune_malloc, reuse=reuse)


def write_plan(plan: Plan, *, progress: Optional[ProgressFactory] = None,
               threads: Optional[int] = None, tune_malloc: bool = False,
               output: Optional[Path] = None, reuse: Optional[Reuse] = None) -> BuildResult:
    """Write a planned archive: atomically at its target, or with `output` as that new file
    (a temporary of the caller's, which the caller removes; never a no-archive folder).

    Inputs are listed and the handler parsed once, by :func:`plan_build`; an input that
    changed since then fails the build before anything is published.
    `progress` gets the total byte count and may return a callback; `threads` sizes the
    deflate pool (default: see :func:`mar_tasks.formats.deflate.default_workers`);
    `tune_malloc` applies :mod:`mar_tasks.allocator`'s process-wide malloc settings, which
    only a process mar_tasks owns should ask for (the CLI does; see that module).
    `reuse` (doit reruns only) lets entries whose input did not change be carried over
    from the output being replaced instead of read and compressed again (see
    :mod:`mar_tasks.formats.carry_over`); the bytes are those of a build without it.
    The deflate threads are stopped before this returns.
    """
    opts, sel, epoch, manifest = plan.opts, plan.sel, plan.epoch, plan.manifest
    if tune_malloc:
        keep_freed_memory()
    total = sum(e.size for e in sel.entries)
    tick = progress(total) if progress else None
    target = opts.output_path if output is None else output
    made: List[Path] = []
    carried: List[str] = []
    digests: Dict[str, str] = {}
    try:
        if output is not None:
            stamp = _write(opts, sel, manifest, epoch, output, tick, threads, digests=digests)
            check_all_unchanged(sel.entries)
        else:
            made = make_folders(Path(opts.export_path))
            with atomic.staged(target, opts.archive_format == "no-archive") as tmp:
                stamp = _write_carrying(opts, sel, manifest, epoch, tmp, tick, threads, reuse, carried,
                                        digests)
                check_all_unchanged(sel.entries)  # before publishing (see input_files)
    except OSError as exc:
        remove_made_folders(made)
        hint = "free some space" if exc.errno == errno.ENOSPC else "check the export path"
        raise ArchiveError(f"cannot write {target} ({exc.strerror}); {hint} and run again") from None
    except BaseException:  # a changed input, Ctrl-C, SIGTERM: leave no folder we made
        remove_made_folders(made)
        raise
    return BuildResult(target, len(sel.entries), total, stamp, tuple(sel.entries), tuple(carried),
                       tuple(digests.items()))


def _write_carrying(opts: ArchiveOptions, sel: Selection, manifest: bytes, epoch: int, tmp: Path,
                    tick: Optional[Callable[[int], None]], threads: Optional[int],
                    reuse: Optional[Reuse], carried: List[str], digests: Dict[str, str]) -> bytes:
    """:func:`_write`, carrying over what `reuse` allows from the output it replaces (tgz:
    nothing, its one gzip stream has no entries to carry); the names of the entries carried
    over are added to `carried`."""
    # (a zip only: its writer is the one that can start the writeback early)
    writeback = opts.archive_format in ("default", "zip-store") and atomic.rename_writes_back(opts.output_path)
    if reuse is None or opts.archive_format == "tgz" or not reuse.output_holds():
        return _write(opts, sel, manifest, epoch, tmp, tick, threads, digests=digests, writeback=writeback)
    target = opts.output_path
    old = None if opts.archive_format == "no-archive" else open_old_zip(target, reuse.digests)
    try:
        stamp = _write(opts, sel, manifest, epoch, tmp, tick, threads, reuse.unchanged, old, carried,
                       digests, writeback)
    finally:
        if old is not None:
            old.f.close()
    if not reuse.output_holds():
        raise ArchiveError(f"{target} changed while this build read it; run the build again")
    return stamp


def _write(opts: ArchiveOptions, sel: Selection, manifest: bytes, epoch: int, tmp: Path,
           tick: Optional[Callable[[int], None]], threads: Optional[int],
           unchanged: Optional[Callable[[Entry], bool]] = None, old: Optional[OldZip] = None,
           carried: Optional[List[str]] = None, digests: Optional[Dict[str, str]] = None,
           writeback: bool = False) -> bytes:
    """Write the archive into `tmp`; return its stamp. A zip's entries' stored-bytes digests
    are put in `digests` (saved by the doit task for the next rebuild's carry-over).
    `writeback`: the rename that publishes `tmp` would write it back (see
    :func:`mar_tasks.atomic.rename_writes_back`), so the zip writer starts that early."""
    if opts.archive_format == "no-archive":
        target = opts.output_path
        from_old = None if unchanged is None else (
            lambda e: old_folder_file(target, e) if unchanged(e) else None)
        write_folder(tmp, manifest, sel.entries, epoch, tick, from_old, carried)
        return b""
    compression = "store" if opts.archive_format == "zip-store" else opts.compression
    with open(tmp, "wb", buffering=1 << 20) as fp, ParallelDeflate(threads) as deflater:
        if opts.archive_format == "tgz":
            return write_tgz(fp, opts.model_name, manifest, sel.entries, epoch, deflater, tick)
        writer = ZipWriter(fp, *zip_date_time(epoch), deflater, tick, writeback)
        writer.write_bytes(MANIFEST_ARCNAME, manifest, compression)
        for entry in sel.entries:
            found = old.find(entry) if old is not None and unchanged is not None and unchanged(entry) else None
            if found is None:
                writer.write_file(entry, compression)
            else:
                data_at, e = found
                writer.write_carried(entry, old.fileno(), data_at, e.method, e.crc, e.csize,
                                     old.digests[entry.arcname])
                if carried is not None:
                    carried.append(entry.arcname)
        stamp = writer.finish()
        if digests is not None:
            digests.update(writer.entry_digests)
        return stamp
