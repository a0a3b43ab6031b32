"""torch-model-archiver 0.12's own integration cases, run through mar-archive.

The cases are those of pytorch/serve v0.12.0, ``model-archiver/model_archiver/tests/
integ_tests/configuration.json`` and ``default_handler_configuration.json``, with the same
resource files recreated here (their content as in that repository: the handler defines
only ``my_handler``). Each case is checked the way torch-model-archiver's test checks it
(archive exists, manifest ``handler == handler.split("/")[-1]``, modelName, runtime, the
listed files). Where mar_tasks' result differs, ``DIFFERS`` says why; docs/cli.md lists
the same differences.
"""
from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import run_cli_process, write_tree

R = "res/regular_model/"
RESOURCES = {
    R + "test_handler.py": "def my_handler(data, context):\n    pass\n",
    R + "test_model.py": "",
    R + "test_serialized_file.pt": b"\x80\x02serialized",
    R + "test_index_to_name.json": '{"0": "zero"}',
    R + "dummy-artifacts.txt": "dummy",
    R + "dir/1.py": "__version__ = 1",
    R + "service.py": '"""\nThis is a dummy source fiile\n"""\n\n\ndef handle():\n    return "Dummy model"\n',
    R + "source_vocab.pt": b"vocab",
}
BASE = {"model-file": R + "test_model.py", "serialized-file": R + "test_serialized_file.pt",
        "extra-files": R + "test_index_to_name.json", "version": "1.0"}

# (name, options, iterations, torch-model-archiver's expected outcome)
CASES = [
    ("packaging_mar", {"handler": R + "test_handler.py", "archive-format": "default"}, 1, "ok"),
    ("packaging_noarchive", {"handler": R + "test_handler.py", "archive-format": "no-archive"}, 1, "ok"),
    ("packaging_tgz", {"handler": R + "test_handler.py", "archive-format": "tgz", "extra-files":
                       f"{R}test_index_to_name.json,{R}dummy-artifacts.txt,{R}dir/1.py"}, 1, "ok"),
    ("packaging_mar_twice", {"handler": R + "test_handler.py", "archive-format": "default"}, 2, "error"),
    ("packaging_mar_force", {"handler": R + "test_handler.py", "archive-format": "default",
                             "force": True}, 2, "ok"),
    ("packaging_zip_store_mar", {"handler": R + "test_handler.py", "archive-format": "zip-store",
                                 "force": True}, 2, "ok"),
    ("packaging_mar_with_handler_name", {"handler": R + "test_handler", "force": True}, 2, "ok"),
    ("packaging_mar_with_handler_entrypoint_func", {"handler": R + "test_handler:my_handler",
                                                    "force": True}, 2, "ok"),
    ("extra_files_path", {"handler": R + "test_handler", "extra-files": R}, 1, "ok"),
    ("missing_extra_files", {"handler": R + "test_handler", "extra-files": R + "missing.json"}, 1, "error"),
    ("image_classifier_mar", {"handler": "image_classifier"}, 1, "ok"),
    ("text_classifier_mar", {"handler": "text_classifier",
                             "extra-files": f"{R}test_index_to_name.json,{R}source_vocab.pt"}, 1, "ok"),
]

NO_ENTRY_POINT = "TorchServe 0.12 cannot load it: test_handler.py has no handle() and no class"
DIFFERS = {
    "packaging_mar": NO_ENTRY_POINT,
    "packaging_noarchive": NO_ENTRY_POINT,
    "packaging_tgz": NO_ENTRY_POINT,
    "packaging_mar_force": NO_ENTRY_POINT,
    "packaging_zip_store_mar": NO_ENTRY_POINT,
    "packaging_mar_with_handler_name": NO_ENTRY_POINT,
    "extra_files_path": NO_ENTRY_POINT + "; and a folder in --extra-files keeps its name "
                        "(regular_model/...) instead of spilling into the root",
}


def _args(opts: dict) -> list:
    out = []
    for key, value in opts.items():
        if key == "force":
            out += ["-f"] if value else []
        else:
            out += [f"--{key}", str(value).rstrip("/")]
    return out


def _run(tmp_path: Path, opts: dict, iterations: int):
    for _ in range(iterations):
        r = run_cli_process(["--model-name", "model", "--export-path", "model", "-q", *_args(opts)], tmp_path)
        if r.returncode != 0:
            return r
    return r


def _manifest_and_names(out: Path, fmt: str):
    if fmt == "tgz":
        with tarfile.open(out / "model.tar.gz") as t:
            return json.load(t.extractfile("model/MAR-INF/MANIFEST.json")), \
                [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    if fmt == "no-archive":
        root = out / "model"
        return json.loads((root / "MAR-INF/MANIFEST.json").read_text()), \
            [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    with zipfile.ZipFile(out / "model.mar") as z:
        return json.loads(z.read("MAR-INF/MANIFEST.json")), z.namelist()


@pytest.mark.parametrize("name,opts,iterations,expected", CASES, ids=[c[0] for c in CASES])
def test_torch_model_archiver_integration_case(tmp_path: Path, name, opts, iterations, expected):
    write_tree(tmp_path, RESOURCES)
    opts = {**BASE, **opts}
    r = _run(tmp_path, opts, iterations)
    assert "Traceback" not in r.stderr
    if name in DIFFERS and NO_ENTRY_POINT in DIFFERS[name]:
        # We refuse what TorchServe cannot load; the same case with the entry point named
        # must then give torch-model-archiver's result.
        assert r.returncode == 1 and "has no module-level handle() and defines 0 classes" in r.stderr
        opts["handler"] = opts["handler"] + ":my_handler"
        r = _run(tmp_path, opts, iterations)
    if expected == "error":
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        return
    assert r.returncode == 0, r.stderr
    fmt = opts.get("archive-format", "default")
    manifest, names = _manifest_and_names(tmp_path / "model", fmt)
    assert manifest["runtime"] == "python" and manifest["model"]["modelName"] == "model"
    assert manifest["model"]["handler"] == opts["handler"].split("/")[-1]
    assert manifest["archiverVersion"].startswith("mar_tasks ")  # differs: names the tool honestly
    expected_names = {"MAR-INF/MANIFEST.json", "test_model.py", "test_serialized_file.pt"}
    if opts["handler"].startswith(R):
        expected_names.add("test_handler.py")
    if name == "packaging_tgz":
        expected_names |= {"dummy-artifacts.txt", "1.py"}
    if name == "extra_files_path":
        expected_names |= {"regular_model/dir/1.py", "regular_model/dummy-artifacts.txt"}
    if name == "text_classifier_mar":
        expected_names.add("source_vocab.pt")
    assert expected_names <= set(names), names


# Archives torch-model-archiver 0.12 builds from fewer inputs than the cases above (issue 18,
# item 3): the manifest alone for a built-in handler, a handler file with its requirements.
@pytest.mark.parametrize("fmt", ["default", "tgz", "no-archive", "zip-store"])
def test_a_builtin_handler_alone_is_the_manifest_alone(tmp_path: Path, fmt: str):
    r = _run(tmp_path, {"handler": "image_classifier", "archive-format": fmt}, 1)
    assert r.returncode == 0, r.stderr
    manifest, names = _manifest_and_names(tmp_path / "model", fmt)
    assert set(names) - {"MAR-INF", "MAR-INF/"} == {"MAR-INF/MANIFEST.json"}  # (tgz: the folder too)
    assert manifest["model"] == {"modelName": "model", "handler": "image_classifier", "modelVersion": "1.0"}
    (output,) = (tmp_path / "model").iterdir()
    v = run_cli_process([str(output), "--verify"], tmp_path, module="mar_tasks.cli.inspect")
    assert v.returncode == 0 and "verify: OK" in v.stdout, v.stdout + v.stderr


def test_a_handler_file_with_only_its_requirements(tmp_path: Path):
    write_tree(tmp_path, {"h.py": "def handle(data, context):\n    return data\n",
                          "requirements.txt": "numpy\n"})
    r = _run(tmp_path, {"handler": "h.py", "requirements-file": "requirements.txt"}, 1)
    assert r.returncode == 0, r.stderr
    manifest, names = _manifest_and_names(tmp_path / "model", "default")
    assert sorted(names) == ["MAR-INF/MANIFEST.json", "h.py", "requirements.txt"]
    assert manifest["model"]["handler"] == "h.py" and manifest["model"]["requirementsFile"] == "requirements.txt"


def test_a_builtin_handler_alone_under_doit_builds_once(tmp_path: Path):
    """No input files means no file_dep: the task must still be up to date on the next run,
    and rebuilt when an option or the archive changes."""
    from doit_helpers import doit
    (tmp_path / "dodo.py").write_text("from mar_tasks import task_archive  # noqa: F401\n")
    toml = '[tool.mar_tasks.models.ic]\nhandler = "image_classifier"\nexport-path = "out"\n'
    (tmp_path / "pyproject.toml").write_text(toml)
    assert doit(tmp_path, "archive").built == {"ic"}
    assert doit(tmp_path, "archive").built == set()
    (tmp_path / "pyproject.toml").write_text(toml + 'version = "2.0"\n')
    assert doit(tmp_path, "archive").built == {"ic"}
    (tmp_path / "out/ic.mar").unlink()
    assert doit(tmp_path, "archive").built == {"ic"}
    assert doit(tmp_path, "archive").built == set()
    assert doit(tmp_path, "archive", "--force").built == {"ic"}
