"""Handler conventions, checked statically the way TorchServe 0.12 resolves them."""
from __future__ import annotations

from pathlib import Path

import pytest

import json
import zipfile

from conftest import run_cli_process, write_tree
from mar_tasks import ArchiveError, ArchiveOptions, build_archive


def build(tmp_path: Path, files: dict, handler: str, **kw):
    write_tree(tmp_path / "m", {"w.bin": "w", **files})
    o = ArchiveOptions(model_name="m", handler=handler, model_path=Path("m"), force=True, **kw)
    return build_archive(o.resolved(tmp_path))


GOOD = [
    ({"service.py": "def handle(d, c): pass\n"}, "service"),
    ({"service.py": "def handle(d, c): pass\n"}, "service:handle"),
    ({"service.py": "async def infer(d, c): pass\n"}, "service:infer"),
    ({"service.py": "from impl import run as handle\n"}, "service"),
    ({"service.py": "try:\n    import x\nexcept ImportError:\n    def handle(d, c): pass\n"}, "service"),
    ({"service.py": "class H:\n    def handle(self, d, c): pass\n"}, "service"),
    ({"service.py": "from ts.torch_handler.base_handler import BaseHandler\nclass H(BaseHandler):\n    pass\n"}, "service"),
    ({"pkg/sub/service.py": "def handle(d, c): pass\n"}, "pkg.sub.service"),
    ({"pkg/__init__.py": "def handle(d, c): pass\n"}, "pkg"),
    ({"lstm-service.py": "def handle(d, c): pass\n"}, "lstm-service:handle"),
    ({"service.py": "from helpers import *\n"}, "service:anything"),
    ({}, "image_classifier"),
    ({"service.py": "def handle(d, c): pass\n"}, "service.py"),
    ({"service.py": "if True:\n    def handle(d, c): pass\n"}, "service"),
    ({"service.py": "if False:\n    pass\nelse:\n    def handle(d, c): pass\n"}, "service"),
    ({"service.py": "if not 0:\n    def handle(d, c): pass\n"}, "service"),
]


@pytest.mark.parametrize("files,handler", GOOD, ids=[g[1] + str(i) for i, g in enumerate(GOOD)])
def test_accepted_handlers(tmp_path: Path, files, handler):
    assert build(tmp_path, files, handler).path.is_file()


BAD = [
    ({"service.py": "def other(d, c): pass\n"}, "service", "defines 0 classes"),
    ({"service.py": "class A(Base): pass\nclass B(Base): pass\n"}, "service", "defines 2 classes"),
    ({"service.py": "import os\n"}, "service:handle", "'handle' is not defined"),
    ({"service.py": "def handle(:\n"}, "service", "syntax error"),
    ({"pkg/service.py": "def handle(d, c): pass\n"}, "service", "not found in the archive"),
    ({}, "image_classifier:handle", "not found in the archive"),
    ({"service.py": "class H:\n    def run(self): pass\n"}, "service:missing", "has no handle"),
    ({"service.py": "class A(B): pass\nclass C(B): pass\n"}, "service:missing", "'missing' is not defined"),
    ({"service.py": "def handle(d, c): pass\n\0"}, "service", "NUL byte"),
    # issue 19, item 8: what TorchServe would fail at load time
    ({"service.py": "if False:\n    def handle(d, c): pass\n"}, "service", "defines 0 classes"),
    ({"service.py": "if __name__ == '__main__':\n    def handle(d, c): pass\n"}, "service", "defines 0 classes"),
    ({"service.py": "while 0:\n    def handle(d, c): pass\n"}, "service", "defines 0 classes"),
    ({"service.py": "if True:\n    pass\nelse:\n    def handle(d, c): pass\n"}, "service", "defines 0 classes"),
    ({"json.py": "def handle(d, c): pass\n"}, "json", "Python's own 'json'"),
    ({"csv.py": "def handle(d, c): pass\n"}, "csv.py", "Python's own 'csv'"),
    ({"os/__init__.py": "def handle(d, c): pass\n"}, "os", "Python's own 'os'"),
    # red team F9-F11
    ({"torch.py": "def handle(d, c): pass\n"}, "torch", "the 'torch' module TorchServe uses"),
    ({"yaml.py": "def handle(d, c): pass\n"}, "yaml.py", "the 'yaml' module TorchServe uses"),
    ({"h.py": "def handle(d, c): pass\n", "h/__init__.py": ""}, "h", "import h/__init__.py instead of h.py"),
    ({"h.py": "def handle(d, c): pass\n", "h/__init__.py": ""}, "h.py", "import h/__init__.py instead of h.py"),
    ({"h.py": "def handle(d, c): pass\n", "h.cpython-311-x86_64-linux-gnu.so": ""}, "h", "import h.cpython"),
    ({"a.py": "", "a/h.py": "def handle(d, c): pass\n"}, "a.h", "import a.py instead of a/h.py"),
    ({"h.py": "class A:\n    def handle(self, d, c): pass\nHandler = A\n"}, "h", "defines 2 classes"),
    ({"h.py": "from typing import Any\nhandle: Any\n"}, "h", "defines 0 classes"),
    ({"h.py": "def handle(d, c): pass\ndel handle\n"}, "h", "defines 0 classes"),
    ({"h.py": "d = {}\ntry:\n    d[handle] = 1\nexcept NameError:\n    pass\n"}, "h", "defines 0 classes"),
]


@pytest.mark.parametrize("files,handler,msg", BAD, ids=[b[2] for b in BAD])
def test_refused_handlers(tmp_path: Path, files, handler, msg):
    with pytest.raises(ArchiveError, match=msg):
        build(tmp_path, files, handler)
    assert not (tmp_path / "m.mar").exists()


def test_lsp_runtime_skips_python_checks(tmp_path: Path):
    assert build(tmp_path, {}, "BaseHandler", runtime="LSP").path.is_file()


def test_missing_function_falls_back_to_the_only_class_as_torchserve_does(tmp_path: Path):
    # ts/model_loader.py 0.12: no attribute `nope` -> instantiate the module's only class
    with pytest.warns(UserWarning, match="falls back to its only class, H"):
        result = build(tmp_path, {"service.py": "class H:\n    def handle(self, d, c): pass\n"},
                       "service:nope")
    assert result.path.is_file()


def test_cli_shows_the_fallback_as_one_warning_line(tmp_path: Path):
    write_tree(tmp_path / "m", {"service.py": "class H:\n    def handle(self, d, c): pass\n"})
    r = run_cli_process(["--model-name", "m", "--model-path", "m", "--handler", "service:nope"], tmp_path)
    assert r.returncode == 0
    assert r.stderr.splitlines()[0] == ("mar-archive: warning: handler function 'nope' is not defined "
                                        "in service.py; TorchServe 0.12 falls back to its only class, "
                                        "H, and calls its handle()")


@pytest.mark.parametrize("handler,manifest_value", [
    ("code/test_handler:my_handler", "test_handler:my_handler"),
    ("code/test_handler.py:my_handler", "test_handler.py:my_handler"),
    ("code/test_handler", "test_handler"),
    ("code/test_handler.py", "test_handler.py"),
])
def test_manifest_keeps_the_users_spelling_of_a_path_handler(tmp_path: Path, handler, manifest_value):
    write_tree(tmp_path, {"code/test_handler.py": "def my_handler(d, c): pass\ndef handle(d, c): pass\n"})
    result = build(tmp_path, {}, handler)
    with zipfile.ZipFile(result.path) as z:
        assert json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["handler"] == manifest_value
        assert "test_handler.py" in z.namelist()
    r = run_cli_process([str(result.path), "--verify"], tmp_path, module="mar_tasks.cli.inspect")
    assert r.returncode == 0, r.stdout


def test_dotted_handler_file_is_refused_by_writer_and_verifier(tmp_path: Path):
    write_tree(tmp_path, {"my.handler.py": "def handle(d, c): pass\n"})
    with pytest.raises(ArchiveError, match="package 'my'; rename the file without dots"):
        build(tmp_path, {}, "my.handler.py")
    # the verifier applies the same rule to an archive made elsewhere
    with zipfile.ZipFile(tmp_path / "x.mar", "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps({"runtime": "python", "model": {
            "modelName": "x", "handler": "my.handler.py", "modelVersion": "1.0"}}))
        z.writestr("my.handler.py", "def handle(d, c): pass\n")
    r = run_cli_process(["x.mar", "--verify"], tmp_path, module="mar_tasks.cli.inspect")
    assert r.returncode == 1 and "package 'my'" in r.stdout


@pytest.mark.parametrize("handler,manifest_handler", [("in/libh", "libh"), ("in/libh:infer", "libh:infer")])
def test_lsp_handler_library_is_packed_as_torch_model_archiver_does(tmp_path: Path, handler: str,
                                                                    manifest_handler: str):
    # torch-model-archiver 0.12 (model_packaging_utils.copy_artifacts): the LSP runtime's
    # handler names a shared library without its suffix; libh.so goes to the archive root
    # and the manifest holds the base name.
    write_tree(tmp_path, {"in/libh.so": b"\x7fELF library"})
    r = run_cli_process(["--model-name", "cpp", "--handler", handler, "--runtime", "LSP"], tmp_path)
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(tmp_path / "cpp.mar") as z:
        assert sorted(z.namelist()) == ["MAR-INF/MANIFEST.json", "libh.so"]
        assert z.read("libh.so") == b"\x7fELF library"
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert manifest["runtime"] == "LSP" and manifest["model"]["handler"] == manifest_handler


def test_handler_named_like_the_standard_library_is_refused_by_the_verifier(tmp_path: Path):
    """TorchServe's worker has imported json already: import_module("json") never reads the
    archive's json.py (issue 19, item 8)."""
    with zipfile.ZipFile(tmp_path / "x.mar", "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", json.dumps({"runtime": "python", "model": {
            "modelName": "x", "handler": "json", "modelVersion": "1.0"}}))
        z.writestr("json.py", "def handle(d, c): pass\n")
    r = run_cli_process(["x.mar", "--verify"], tmp_path, module="mar_tasks.cli.inspect")
    assert r.returncode == 1 and "Python's own 'json' module" in r.stdout, r.stdout
