"""Where ``MAR-INF/MANIFEST.json`` is made.

The layout is torch-model-archiver 0.12's, which TorchServe 0.12 reads: optional keys are
left out when unset and file fields hold base names. ``modelVersion`` defaults to "1.0"
because TorchServe's ``ModelArchive.validate`` rejects a manifest without it.
"""
from __future__ import annotations

import json
from typing import Dict

from mar_tasks.plan.build_time import created_on
from mar_tasks.plan.options import ArchiveOptions
from mar_tasks.version import ARCHIVER_VERSION

MANIFEST_ARCNAME = "MAR-INF/MANIFEST.json"
DEFAULT_MODEL_VERSION = "1.0"


def make_manifest(opts: ArchiveOptions, handler: str, files: Dict[str, str], epoch: int) -> bytes:
    """The manifest's bytes (UTF-8 JSON, 2-space indent, fixed key order)."""
    model: Dict[str, str] = {"modelName": opts.model_name}
    if "serializedFile" in files:
        model["serializedFile"] = files["serializedFile"]
    model["handler"] = handler
    if "modelFile" in files:
        model["modelFile"] = files["modelFile"]
    model["modelVersion"] = str(opts.version) if opts.version is not None else DEFAULT_MODEL_VERSION
    for key in ("requirementsFile", "configFile"):
        if key in files:
            model[key] = files[key]
    doc = {
        "createdOn": created_on(epoch),
        "runtime": opts.runtime,
        "model": model,
        "archiverVersion": ARCHIVER_VERSION,
    }
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")
