"""Archives as doit tasks: :func:`archive_task` for one model, :func:`task_archive` for a project.

Each task's ``file_dep`` is exactly :func:`mar_tasks.plan.selection.select_files`' entries (the
files the archive will contain), its target is the archive, and one digest
record holds every option that changes the output. Actions are module-level functions
taking picklable arguments, so ``doit -n N -P process`` works under fork and spawn alike.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple, Union

from doit import task_params
from doit.exceptions import InvalidTask, TaskFailed

from mar_tasks.errors import ArchiveError, from_os_error
from mar_tasks.tasks.remembered_listings import Listing, ListingCache, call_cache, call_key, \
    enabled as listings_enabled
from mar_tasks.tasks.project_config import Model, ModelProblem, ModelSpec, Project, find_pyproject, load_models
from mar_tasks.tasks.project_lock import hold_project_lock
from mar_tasks.tasks.reuse_grant import granted, saved_layout
from mar_tasks.tasks.fingerprints import dep_path, output_fingerprint
from mar_tasks.tasks.uptodate import ArchiveUptodate, input_stamps, inputs_digest
from mar_tasks.version import __version__, deflate_version

if TYPE_CHECKING:  # loaded when a model's folder must be walked: a no-op run never does
    from mar_tasks.plan.options import ArchiveOptions

PathLike = Union[str, Path]


def run_archive(model: Union[ArchiveOptions, ModelSpec, "CallSpec"], config: str,
                force: bool = False, *, task: Any) -> Union[Dict[str, Any], TaskFailed]:
    """doit action: build one archive; an existing output must be ours unless forced.

    `model` is resolved options, or a project model's declaration or an archive_task()
    call's arguments (turned into options here: a task made from a remembered listing
    never needed them).

    `force` is the task's own parameter (``doit archive:NAME --force``). Under ``doit -n N``
    N builds share the cores, so each deflates on 1/N of them. The values saved are the
    options' digest `config`, the archive's fingerprint and stamp, the digest of the inputs
    as read, each input's (inode, ctime) and executable bit (see :mod:`.uptodate`), and
    the token of the build's record (:mod:`.build_records`: what a rebuild carries over on).
    `task` is doit's (doit passes it): the up-to-date check may have attached a grant to
    carry unchanged entries over from the output being replaced
    (:mod:`mar_tasks.tasks.reuse_grant`; never used with `force`).
    """
    from mar_tasks.formats.deflate import IMPLEMENTATION, default_workers  # the writers load on first
    from mar_tasks.engine import build_archive     # build, not with the tasks: a no-op never pays for them
    from mar_tasks.tasks.doit_private import builds_at_once, keep_values
    from mar_tasks.progress import terminal_bar
    started = time.time_ns()
    try:
        opts = model.options() if isinstance(model, (ModelSpec, CallSpec)) else model
    except (ArchiveError, InvalidTask) as exc:
        return TaskFailed(f"mar_tasks: {exc}")
    if force:
        opts = replace(opts, force=True)
    at_once = builds_at_once()
    threads = default_workers(at_once)
    # The command line's bar for large archives, on the terminal doit runs in (not on doit's
    # capture of the task's stderr); one build at a time, or bars would overwrite each other.
    progress = None if at_once > 1 else partial(terminal_bar, label=opts.model_name,
                                                 stream=sys.__stderr__)
    tune = os.environ.get("MAR_TASKS_TUNE_MALLOC") == "1"
    try:
        reuse = None if force else granted(task)
        carry = None if reuse is None else reuse.reuse(str(opts.output_path), os.getcwd())
        result = build_archive(opts, replace_own=True, threads=threads, tune_malloc=tune,
                               progress=progress, reuse=carry)
    except ArchiveError as exc:
        return TaskFailed(f"mar_tasks: {opts.model_name}: {exc}")
    from mar_tasks.tasks import build_records
    cwd = os.getcwd()
    token = build_records.new_token()
    record = {"entries": saved_layout(result.entries, cwd), "deflate": IMPLEMENTATION,
              "carried": list(result.carried), "digests": dict(result.digests)}
    if result.path.is_dir():  # what a restored copy's manifest must be (uptodate, step 2)
        from mar_tasks.plan.manifest import MANIFEST_ARCNAME
        from mar_tasks.tasks.content_hashes import file_md5
        record["manifest_md5"] = file_md5(str(result.path / MANIFEST_ARCNAME))
    build_records.save(str(result.path), token, record)
    stamp = result.stamp.decode("ascii", "replace") or None
    keep_values(task, {
        "config": config, "output": output_fingerprint(str(result.path)), "stamp": stamp,
        "inputs": inputs_digest((dep_path(e.source, cwd), e.size, e.mtime) for e in result.entries),
        "stats": input_stamps(result.entries, started),
        "x": [i for i, e in enumerate(result.entries) if e.executable], "build": token})
    return {"stamp": stamp}  # doit's result (result_dep): changes when the archive's content does


def fail_task(message: str) -> TaskFailed:
    """doit action of a model whose files could not even be listed (bad path, handler...)."""
    return TaskFailed(message)


def clean_output(target: str, arcnames: Sequence[str]) -> None:
    """doit clean action: remove what mar_tasks wrote at `target` (and its build record),
    and nothing else.

    An archive file goes if it carries our stamp. In a no-archive folder (ours by its
    manifest) only the manifest and the files this model archives are removed, then the
    folders left empty: a file someone put there by hand stays, and is named.
    """
    from mar_tasks import atomic
    from mar_tasks.plan.manifest import MANIFEST_ARCNAME
    from mar_tasks.formats.ownership_stamp import is_ours
    from mar_tasks.tasks import build_records
    path = Path(target)
    atomic.clean_stale(path)
    build_records.remove(target)
    if not (os.path.lexists(path) and is_ours(path)):
        return
    if not path.is_dir():
        path.unlink()
        print(f"removed {path}")
        return
    for arcname in [MANIFEST_ARCNAME, *arcnames]:
        f = path / arcname
        if os.path.isfile(f) and not os.path.islink(f):
            f.unlink()
    for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
    if os.path.lexists(path):
        print(f"kept {path}: it holds files mar_tasks did not write")
    else:
        print(f"removed {path}")


FORCE_PARAM = {"name": "force", "long": "force", "type": bool, "default": False,
               "help": "rebuild this archive and overwrite an output mar_tasks did not write"}


def _no_shard_for_one_model(value: str) -> str:
    """``--shard`` given to one model's task (``doit archive:NAME --shard 1/2``): doit would
    print its option parser's raw error; say what is wrong in one line (doit prints an
    InvalidTask raised while it parses task options as ``ERROR: <message>``)."""
    if value:
        raise InvalidTask(f"mar_tasks: --shard {value} splits the models of `doit archive` or "
                          "`doit publish`; a task named with :NAME is one model already, so "
                          "drop --shard (or drop :NAME)")
    return value


# Accepted by each model's task only to be refused in one line (see above).
ONE_MODEL_SHARD_PARAM = {"name": "shard", "long": "shard", "type": _no_shard_for_one_model,
                         "default": "", "help": "not for one model: see `doit help archive`"}
_ONE_MODEL_PARAMS = (FORCE_PARAM, ONE_MODEL_SHARD_PARAM)


def options_digest(opts: ArchiveOptions) -> str:
    """md5 of every option that changes the archive's bytes (and mar_tasks' and the deflate
    implementation's versions): a change rebuilds. One record per task, checked by
    :class:`ArchiveUptodate`."""
    record = {**opts.record(), "mar_tasks": __version__, "deflate": deflate_version()}
    return hashlib.md5(json.dumps(record, sort_keys=True).encode()).hexdigest()


def failed_task(name: str, message: str) -> Dict[str, Any]:
    """The task of a model that cannot even be listed: it fails alone, with one line."""
    return {"name": name, "doc": f"{name} (fails: see `doit archive:{name}`)",
            "actions": [(fail_task, [message])], "uptodate": [False], "verbosity": 1}


def task_for(opts: ArchiveOptions, force: bool = False,
             listings: Optional[ListingCache] = None, key: str = "",
             index: str = "") -> Dict[str, Any]:
    """The doit task dict for resolved options (see module docstring).

    `force` rebuilds unconditionally (``doit archive --force``); ``opts.force`` only lets
    the build replace an output mar_tasks did not write, as the CLI's ``-f`` does. With
    `listings`, the listing is remembered as `index` (default: the model's name) with `key`
    (see :func:`model_task`).
    """
    from mar_tasks.plan.options import validate_values
    from mar_tasks.plan.selection import select_files
    cwd = os.getcwd()
    started = time.time_ns()
    try:
        validate_values(opts)
        sel = select_files(opts)
    except (ArchiveError, OSError) as exc:
        exc = from_os_error(exc) if isinstance(exc, OSError) else exc
        return failed_task(opts.model_name, f"mar_tasks: {opts.model_name}: {exc}")
    # Spelled as hand-written file_deps and targets would be (relative under the dodo's
    # folder), so a user task depending on the archive gets it as a task dependency.
    listing = Listing(key, cwd, options_digest(opts), dep_path(str(opts.output_path), cwd),
                      tuple(dep_path(e.source, cwd) for e in sel.entries),
                      tuple(e.arcname for e in sel.entries), sel.checks)
    if listings is not None:
        listings.remember(index or opts.model_name, listing, started)
    action_opts = replace(opts, force=True) if force and not opts.force else opts
    return _task_dict(opts.model_name, action_opts, listing, force)


def model_task(model: ModelSpec, force: bool = False,
               listings: Optional[ListingCache] = None, cwd: str = "") -> Dict[str, Any]:
    """The task of a model declared in pyproject.toml: from its remembered listing while
    that holds (no options made, no folder walked), else from its options. `cwd`: the
    current folder, when the caller knows it."""
    if listings is not None and not force:
        hit = listings.lookup(model.name, model.key, cwd or os.getcwd())
        if hit is not None:
            return _task_dict(model.name, model, hit, False)
    try:
        opts = model.options()
    except ArchiveError as exc:
        return failed_task(model.name, f"mar_tasks: {exc}")
    return task_for(opts, force, listings, model.key)


def _task_dict(name: str, model: Union[ArchiveOptions, ModelSpec, CallSpec], listing: Listing,
               force: bool) -> Dict[str, Any]:
    # Tuples where doit takes them: a no-op run makes a thousand of these, and lists stay
    # in the garbage collector's care while tuples of strings leave it.
    target = listing.target
    uptodate = ArchiveUptodate(target, listing.deps, listing.config, carry_over=not force)
    # An archive of the manifest alone (a built-in handler, no files) has no file_dep, and
    # doit runs such a task every time unless a check says True; ArchiveUptodate's False (an
    # option or the output changed, --force) still wins, and a missing target still runs it.
    checks = (uptodate, False) if force else (uptodate,) if listing.deps else (uptodate, True)
    return {
        "name": name,
        "doc": f"{name} -> {target}",
        "actions": ((run_archive, (model, listing.config)),),
        "file_dep": listing.deps,
        "targets": (target,),
        "params": _ONE_MODEL_PARAMS,
        "clean": ((clean_output, (target, listing.arcnames)),),
        "uptodate": checks,
        "verbosity": 1,
    }


class CallSpec(NamedTuple):
    """One :func:`archive_task` call's arguments, turned into options only when needed
    (:meth:`options`): a task made from a remembered listing never does. Picklable."""

    model_name: str
    handler: str
    model_path: Optional[PathLike]
    export_path: PathLike
    archive_format: str
    runtime: str
    force: bool
    base: str  # the folder relative paths are taken against
    extra: Tuple[Tuple[str, Any], ...]  # the other keyword arguments, sorted

    def options(self) -> ArchiveOptions:
        """The resolved options; InvalidTask for an argument ArchiveOptions does not take."""
        from mar_tasks.plan.options import ArchiveOptions, parse_extra_files
        extra = dict(self.extra)
        for key in ("serialized_file", "model_file", "requirements_file", "config_file"):
            if extra.get(key) is not None:
                extra[key] = Path(extra[key])
        if "extra_files" in extra:
            extra["extra_files"] = parse_extra_files(extra["extra_files"])
        try:
            opts = ArchiveOptions(model_name=self.model_name, handler=self.handler,
                                  model_path=None if self.model_path is None else Path(self.model_path),
                                  export_path=Path(self.export_path), archive_format=self.archive_format,
                                  runtime=self.runtime, force=self.force, **extra)
        except TypeError as exc:
            raise InvalidTask(f"archive_task({self.model_name!r}): {exc}") from None
        return opts.resolved(Path(self.base))


def archive_task(model_name: str, handler: str, model_path: Optional[PathLike] = None,
                 export_path: PathLike = ".", archive_format: str = "default",
                 runtime: str = "python", force: bool = False,
                 base_dir: Optional[PathLike] = None, **options: Any) -> Dict[str, Any]:
    """One archive as a doit task dict named `model_name`.

    Paths may be str or Path, relative to `base_dir` (default: the current folder, which
    doit sets to the dodo file's folder). Other keyword arguments are the remaining
    :class:`ArchiveOptions` fields (serialized_file, model_file, extra_files, version,
    requirements_file, config_file, compression). `force` is the CLI's ``-f``: the archive
    may replace a file mar_tasks did not write.

    The listing is remembered as a pyproject model's is (:mod:`.remembered_listings`), under
    the call's arguments, in the file the process holding the project's lock writes: the
    lock is taken here, as :func:`project_tasks` takes it.
    """
    cwd = os.getcwd()
    base = os.path.join(cwd, base_dir) if base_dir else cwd
    spec = CallSpec(model_name, handler, model_path, export_path, archive_format, runtime,
                    bool(force), base, tuple(sorted(options.items())))
    if not listings_enabled():
        return task_for(spec.options())
    listings = call_cache(cwd, writable=lambda: hold_project_lock(cwd))
    key = call_key(repr(spec))
    hit = listings.lookup(key, key, cwd)
    if hit is not None:
        return _task_dict(model_name, spec, hit, False)
    return task_for(spec.options(), False, listings, key, key)


def shard_filter(shard: str) -> Callable[[Model], bool]:
    """Which models belong to share ``K/N`` ("" is every model): by a hash of the model's
    name, so adding a model moves no other between shares. A malformed K/N is one line."""
    if not shard:
        return lambda model: True
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise InvalidTask(f"mar_tasks: --shard {shard!r} is not K/N with 1 <= K <= N; e.g. --shard 1/4")
    return lambda model: int(hashlib.sha256(model.name.encode()).hexdigest()[:16], 16) % n == k - 1


def load_project(pyproject: Optional[PathLike] = None) -> Project:
    """The pyproject's models and publish settings (taking the project's lock first)."""
    held = hold_project_lock()
    path = Path(pyproject) if pyproject else find_pyproject(Path.cwd())
    if path is None:
        raise InvalidTask("mar_tasks: no pyproject.toml in this folder or above; declare "
                          "models under [tool.mar_tasks] (see the mar_tasks README)")
    try:
        project = load_models(path)
    except ArchiveError as exc:
        raise InvalidTask(f"mar_tasks: {exc}") from None
    project.holds_lock = held
    if project.publish.url:
        from mar_tasks.tasks import run_summary
        project.publish = run_summary.start(project.publish)
    return project


def project_tasks(pyproject: Optional[PathLike] = None, force: bool = False,
                  shard: str = "") -> Iterator[Dict[str, Any]]:
    """One task per model declared in ``[tool.mar_tasks]`` of `pyproject` (default: nearest).

    A model whose table is wrong fails its own task; a ``model-dirs`` folder that does not
    exist yet adds no task, and says so in the group's doc (``doit info archive``). Takes
    the project's lock first (:mod:`mar_tasks.tasks.project_lock`). `shard` ``K/N`` keeps the
    K-th of N stable shares of the models (CI fan-out).
    """
    project = load_project(pyproject)
    in_shard = shard_filter(shard)
    doc = "Build the model archives declared in pyproject.toml [tool.mar_tasks]"
    yield {"name": None, "doc": "; ".join([doc, *project.notes])}
    listings = None
    cwd = os.getcwd()
    if listings_enabled():
        listings = ListingCache(cwd, writable=project.holds_lock)
    from mar_tasks.plan import output_guard
    with output_guard.batch():
        tasks = [failed_task(m.name, m.message) if isinstance(m, ModelProblem)
                 else model_task(m, force, listings, cwd)
                 for m in project.models if in_shard(m)]
    if listings is not None:
        listings.save(m.name for m in project.models)
    yield from tasks


SHARD_PARAM = {"name": "shard", "long": "shard", "type": str, "default": "",
               "help": "K/N: only the K-th of N stable shares of the models (CI fan-out)"}


@task_params([{"name": "force", "long": "force", "type": bool, "default": False,
               "help": "rebuild every archive and overwrite outputs mar_tasks did not write"},
              SHARD_PARAM])
def task_archive(force: bool = False, shard: str = "") -> Iterator[Dict[str, Any]]:
    """Build the model archives declared in pyproject.toml [tool.mar_tasks]."""
    yield from project_tasks(force=force, shard=shard)
