"""``doit publish``: every declared model's archive at ``<publish url>/<model>.mar`` (or
``.tar.gz``), TorchServe's model-store layout, uploaded only when it changed.

Each object carries the input digest (:mod:`mar_tasks.store.input_digest`) and the
archive's SHA-256 in its metadata. A model whose published object already holds the
archive of the same inputs and options is neither built nor uploaded, even on a fresh
clone with no local archive and no doit state: the task hashes the inputs and asks the
store. Otherwise the planned archive is written to a temporary file beside the target,
uploaded whole and removed: the local archive (``doit archive``'s) is never touched, so
publishing leaves ``doit archive`` nothing to do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, Union

from doit import task_params
from doit.exceptions import TaskFailed

from mar_tasks.errors import ArchiveError
from mar_tasks.plan.options import SUFFIXES, ArchiveOptions
from mar_tasks.store.settings import PublishSettings
from mar_tasks.tasks.archive_tasks import (FORCE_PARAM, ONE_MODEL_SHARD_PARAM, SHARD_PARAM, failed_task,
                                          load_project, shard_filter)
from mar_tasks.tasks.project_config import Model, ModelProblem


def run_publish(opts: ArchiveOptions, settings: PublishSettings,
                force: bool = False) -> Union[None, TaskFailed]:
    """doit action: publish one model's archive if the store does not hold it already."""
    from mar_tasks import atomic
    from mar_tasks.engine import make_folders, plan_build, remove_made_folders, write_plan
    from mar_tasks.store.input_digest import input_digest, sha256_file
    from mar_tasks.store.s3_store import StoreError, store_for
    from mar_tasks.tasks.run_summary import record
    name = opts.model_name + SUFFIXES[opts.archive_format]
    try:
        store = store_for(settings.url or "")
        address = store.url.address(name)
        plan = plan_build(opts, check_output=False)  # the local archive is not ours to check
        digest = input_digest(plan.opts, plan.sel.entries)
        head = store.head(name)
        if head is not None and head["metadata"].get("input-digest") == digest and not force:
            record(settings, "unchanged")
            return None
        made = make_folders(Path(plan.opts.export_path))
        tmp = atomic.temp_path_for(plan.opts.output_path)
        try:
            write_plan(plan, output=tmp)  # fails if an input changed since it was hashed
            meta = {"input-digest": digest, "sha256": sha256_file(str(tmp))[0]}
            store.upload(str(tmp), name, meta)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            remove_made_folders(made)
    except StoreError as exc:
        record(settings, "error")
        return TaskFailed(f"mar_tasks: {opts.model_name}: cannot publish to {settings.url} ({exc})")
    except ArchiveError as exc:
        record(settings, "error")
        return TaskFailed(f"mar_tasks: {opts.model_name}: {exc}")
    record(settings, "published")
    print(f"published {address}")
    return None


def publish_task(spec: Model, settings: PublishSettings) -> Dict[str, Any]:
    if isinstance(spec, ModelProblem):
        return failed_task(spec.name, spec.message)
    try:
        model = spec.options()
    except ArchiveError as exc:
        return failed_task(spec.name, f"mar_tasks: {exc}")
    if model.archive_format == "no-archive":
        return failed_task(model.model_name, f"mar_tasks: {model.model_name}: a no-archive folder "
                           "cannot be published; set archive-format to default or tgz")
    return {"name": model.model_name, "doc": f"{model.model_name} -> {settings.url}",
            "actions": [(run_publish, [model, settings])], "params": [FORCE_PARAM, ONE_MODEL_SHARD_PARAM],
            "uptodate": [False], "verbosity": 2}


@task_params([SHARD_PARAM])
def task_publish(shard: str = "") -> Iterator[Dict[str, Any]]:
    """Publish the declared models' archives to [tool.mar_tasks.publish] url (S3)."""
    project = load_project()
    in_shard = shard_filter(shard)
    if not project.publish.url:  # fail `doit publish` alone; `doit archive` is unaffected
        yield failed_task("no-url", "mar_tasks: no publish url; set url in [tool.mar_tasks.publish] "
                          "or MAR_TASKS_PUBLISH_URL=s3://BUCKET/PREFIX")
        return
    for m in project.models:
        if in_shard(m):
            yield publish_task(m, project.publish)
