"""Handler conventions, checked statically the way TorchServe 0.12 resolves them."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_tree
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
    ({"service.py": "class H:\n    def handle(self): pass\n"}, "service:missing", "'missing' is not defined"),
]


@pytest.mark.parametrize("files,handler,msg", BAD, ids=[b[2] for b in BAD])
def test_refused_handlers(tmp_path: Path, files, handler, msg):
    with pytest.raises(ArchiveError, match=msg):
        build(tmp_path, files, handler)
    assert not (tmp_path / "m.mar").exists()


def test_lsp_runtime_skips_python_checks(tmp_path: Path):
    assert build(tmp_path, {}, "BaseHandler", runtime="LSP").path.is_file()
