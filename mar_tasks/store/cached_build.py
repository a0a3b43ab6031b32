"""One archive through the shared cache: fetch it by input digest, or build and upload it.

The doit tasks call :func:`build_or_fetch` when a cache is configured; without one they call
:func:`mar_tasks.engine.build_archive` directly. See :mod:`mar_tasks.store.remote_cache`.
"""
from __future__ import annotations

from typing import Optional, Tuple

from mar_tasks.store import remote_cache
from mar_tasks.engine import BuildResult, Plan, build_archive, make_folders, plan_build, remove_made_folders
from mar_tasks.store.input_digest import InputDigest, input_digest
from mar_tasks.plan.options import ArchiveOptions
from mar_tasks.formats.input_files import same_reads
from mar_tasks.store.settings import StoreSettings


def build_or_fetch(opts: ArchiveOptions, settings: StoreSettings, threads: Optional[int] = None,
                   tune_malloc: bool = False) -> Tuple[BuildResult, str]:
    """(the result, what the cache did: hit, miss, upload, rejected, read-only, error, off)."""
    if not settings.cache_on or opts.archive_format == "no-archive":
        return build_archive(opts, replace_own=True, threads=threads, tune_malloc=tune_malloc), "off"
    plan = plan_build(opts, replace_own=True)
    return build_planned(plan, input_digest(plan.opts, plan.sel.entries), settings, threads, tune_malloc)


def build_planned(plan: Plan, digest: InputDigest, settings: StoreSettings,
                  threads: Optional[int] = None, tune_malloc: bool = False) -> Tuple[BuildResult, str]:
    """:func:`build_or_fetch` for a build already planned and its inputs already hashed
    (``doit publish`` has done both to ask the store)."""
    opts = plan.opts
    if not settings.cache_on or opts.archive_format == "no-archive":
        return build_archive(opts, replace_own=True, threads=threads, tune_malloc=tune_malloc), "off"
    store = remote_cache.store_for(settings.cache_url or "", "cache")
    made = make_folders(opts.export_path)
    outcome = remote_cache.fetch(store, opts, plan.sel.entries, digest, plan.manifest)
    if outcome == "hit":
        from mar_tasks.formats.ownership_stamp import stamp_of
        result = BuildResult(opts.output_path, len(plan.sel.entries),
                             sum(e.size for e in plan.sel.entries),
                             stamp_of(opts.output_path) or b"", tuple(plan.sel.entries))
        return result, "hit"
    try:
        result = build_archive(opts, replace_own=True, threads=threads, tune_malloc=tune_malloc)
    except BaseException:
        remove_made_folders(made)
        raise
    if outcome == "miss" and settings.cache_mode == "read-write" and not store.read_only \
            and same_reads(result.entries, plan.sel.entries):
        outcome = remote_cache.upload(store, result.path, remote_cache.object_name(opts, digest.digest),
                                      digest.digest)
    return result, outcome
