"""``doit publish``: every declared model's archive at ``<publish url>/<model>.mar`` (or
``.tar.gz``), TorchServe's model-store layout, uploaded only when it changed.

Each object carries the input digest (:mod:`mar_tasks.store.input_digest`) and the archive's
SHA-256 in its metadata. A model whose published object already holds the archive of the
same inputs and options is neither built nor uploaded, even on a fresh clone with no
local archive and no doit state: the task hashes the inputs and asks the store. Otherwise
the archive is built (or fetched from the cache) and uploaded whole.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Union

from doit import task_params
from doit.exceptions import TaskFailed

from mar_tasks.tasks.archive_tasks import FORCE_PARAM, ONE_MODEL_SHARD_PARAM, SHARD_PARAM, failed_task, load_project, shard_filter
from mar_tasks.errors import ArchiveError
from mar_tasks.plan.options import SUFFIXES, ArchiveOptions
from mar_tasks.tasks.project_config import Model, ModelProblem
from mar_tasks.store.settings import StoreSettings


def run_publish(opts: ArchiveOptions, stores: StoreSettings, force: bool = False) -> Union[None, TaskFailed]:
    """doit action: publish one model's archive if the store does not hold it already."""
    from mar_tasks.store.cached_build import build_planned
    from mar_tasks.engine import plan_build
    from mar_tasks.store.input_digest import input_digest
    from mar_tasks.store.remote_cache import record, store_for, upload
    from mar_tasks.store.s3_store import StoreError
    from mar_tasks.formats.input_files import same_reads
    name = opts.model_name + SUFFIXES[opts.archive_format]
    store = store_for(stores.publish_url or "", "publish")
    try:
        plan = plan_build(opts, replace_own=True)
        digest = input_digest(plan.opts, plan.sel.entries)
        head = store.head(name)
        if head is not None and head["metadata"].get("input-digest") == digest.digest and not force:
            record(stores, "publish", "unchanged")
            return None
        result, outcome = build_planned(plan, digest, stores)  # inputs hashed once, above
        if stores.cache_on:
            record(stores, "cache", outcome)
        if not same_reads(result.entries, plan.sel.entries):
            raise ArchiveError("an input changed while it was being published; run again")
        done = upload(store, result.path, name, digest.digest)
    except StoreError as exc:
        record(stores, "publish", "error")
        return TaskFailed(f"mar_tasks: {opts.model_name}: cannot publish to {stores.publish_url} ({exc})")
    except ArchiveError as exc:
        record(stores, "publish", "error")
        return TaskFailed(f"mar_tasks: {opts.model_name}: {exc}")
    if done != "upload":
        record(stores, "publish", "error")
        why = "the store refused the upload (read-only credentials?)" if done == "read-only" else store.off
        return TaskFailed(f"mar_tasks: {opts.model_name}: cannot publish to {stores.publish_url} ({why})")
    record(stores, "publish", "published")
    print(f"published {store.url.key(name)}")
    return None


def publish_task(spec: Model, stores: StoreSettings) -> Dict[str, Any]:
    if isinstance(spec, ModelProblem):
        return failed_task(spec.name, spec.message)
    try:
        model = spec.options()
    except ArchiveError as exc:
        return failed_task(spec.name, f"mar_tasks: {exc}")
    if model.archive_format == "no-archive":
        return failed_task(model.model_name, f"mar_tasks: {model.model_name}: a no-archive folder "
                           "cannot be published; set archive-format to default or tgz")
    return {"name": model.model_name, "doc": f"{model.model_name} -> {stores.publish_url}",
            "actions": [(run_publish, [model, stores])], "params": [FORCE_PARAM, ONE_MODEL_SHARD_PARAM],
            "uptodate": [False], "verbosity": 2}


@task_params([SHARD_PARAM])
def task_publish(shard: str = "") -> Iterator[Dict[str, Any]]:
    """Publish the declared models' archives to [tool.mar_tasks.publish] url (S3)."""
    project = load_project()
    in_shard = shard_filter(shard)
    if not project.stores.publish_url:  # fail `doit publish` alone; `doit archive` is unaffected
        yield failed_task("no-url", "mar_tasks: no publish url; set url in [tool.mar_tasks.publish] "
                          "or MAR_TASKS_PUBLISH_URL=s3://BUCKET/PREFIX")
        return
    for m in project.models:
        if in_shard(m):
            yield publish_task(m, project.stores)
