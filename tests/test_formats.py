"""Each archive format's layout and manifest, read back with zipfile/tarfile."""
from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

from conftest import all_files, run_cli, write_tree, zip_names

BASE = ["--model-name", "squeezenet_v1.1", "--model-path", "model", "--handler", "service:handle"]
FILES = ["assets/synset.txt", "model-0000.params", "model-symbol.json", "service.py", "signature.json"]


def test_default_format_is_zip_with_manifest_first(model: Path, tmp_path: Path):
    assert run_cli(BASE, tmp_path) == 0
    names = zip_names(tmp_path / "squeezenet_v1.1.mar")
    assert names == ["MAR-INF/MANIFEST.json"] + FILES
    with zipfile.ZipFile(tmp_path / "squeezenet_v1.1.mar") as z:
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert z.read("model-0000.params") == (model / "model-0000.params").read_bytes()
        infos = {i.filename: i for i in z.infolist()}
    assert manifest == {
        "createdOn": "01/01/1980 00:00:00",
        "runtime": "python",
        "model": {"modelName": "squeezenet_v1.1", "handler": "service:handle", "modelVersion": "1.0"},
        "archiverVersion": "mar_tasks 0.1.0",
    }
    assert infos["model-0000.params"].compress_type == zipfile.ZIP_DEFLATED
    assert infos["model-0000.params"].external_attr >> 16 == 0o100644


def test_tgz_entries_live_under_model_name(model: Path, tmp_path: Path):
    assert run_cli(BASE + ["--archive-format", "tgz", "--export-path", "out"], tmp_path) == 0
    out = tmp_path / "out" / "squeezenet_v1.1.tar.gz"
    with tarfile.open(out, "r:gz") as t:
        members = t.getmembers()
        files = [m.name for m in members if m.isfile()]
        manifest = json.loads(t.extractfile("squeezenet_v1.1/MAR-INF/MANIFEST.json").read())
        params = t.extractfile("squeezenet_v1.1/model-0000.params").read()
    assert files == ["squeezenet_v1.1/MAR-INF/MANIFEST.json"] + [f"squeezenet_v1.1/{f}" for f in FILES]
    assert all(m.name.startswith("squeezenet_v1.1/") or m.name == "squeezenet_v1.1" for m in members)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert manifest["model"]["modelName"] == "squeezenet_v1.1"
    assert params == (model / "model-0000.params").read_bytes()


def test_no_archive_copies_into_export_slash_name(model: Path, tmp_path: Path):
    assert run_cli(BASE + ["--archive-format", "no-archive", "--export-path", "store"], tmp_path) == 0
    root = tmp_path / "store" / "squeezenet_v1.1"
    assert [f for f in all_files(root) if (root / f).is_file()] == ["MAR-INF/MANIFEST.json"] + FILES
    assert json.loads((root / "MAR-INF/MANIFEST.json").read_text())["model"]["handler"] == "service:handle"
    assert (root / "assets/synset.txt").read_text() == "cat\ndog\n"


def test_zip_store_stores_every_entry(model: Path, tmp_path: Path):
    assert run_cli(BASE + ["--archive-format", "zip-store"], tmp_path) == 0
    with zipfile.ZipFile(tmp_path / "squeezenet_v1.1.mar") as z:
        assert z.testzip() is None
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}


def test_compression_store_and_deflate_options(model: Path, tmp_path: Path):
    assert run_cli(BASE + ["--compression", "store", "--export-path", "s"], tmp_path) == 0
    assert run_cli(BASE + ["--compression", "deflate", "--export-path", "d"], tmp_path) == 0
    with zipfile.ZipFile(tmp_path / "s/squeezenet_v1.1.mar") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    with zipfile.ZipFile(tmp_path / "d/squeezenet_v1.1.mar") as z:
        assert z.testzip() is None
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}


def test_torch_model_archiver_inputs(tmp_path: Path):
    write_tree(tmp_path, {
        "src/model.py": "class Net: pass\n",
        "src/handler.py": "from ts.torch_handler.base_handler import BaseHandler\n"
                          "class MyHandler(BaseHandler):\n    pass\n",
        "weights/state.pt": b"\x00" * 1000,
        "assets/vocab/words.txt": "a\nb\n",
        "assets/.secret": "x",
        "index_to_name.json": "{}",
        "requirements.txt": "numpy\n",
        "model-config.yaml": "batchSize: 4\n",
    })
    args = ["--model-name", "mnist", "--serialized-file", "weights/state.pt", "--model-file",
            "src/model.py", "--handler", "src/handler.py", "--extra-files",
            "assets,index_to_name.json", "-v", "2.0", "-r", "requirements.txt",
            "-c", "model-config.yaml"]
    assert run_cli(args, tmp_path) == 0
    names = zip_names(tmp_path / "mnist.mar")
    assert names == ["MAR-INF/MANIFEST.json", "assets/vocab/words.txt", "handler.py",
                     "index_to_name.json", "model-config.yaml", "model.py", "requirements.txt",
                     "state.pt"]
    with zipfile.ZipFile(tmp_path / "mnist.mar") as z:
        model = json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]
    assert model == {"modelName": "mnist", "serializedFile": "state.pt", "handler": "handler.py",
                     "modelFile": "model.py", "modelVersion": "2.0",
                     "requirementsFile": "requirements.txt", "configFile": "model-config.yaml"}


def test_model_path_and_explicit_inputs_combine(model: Path, tmp_path: Path):
    (tmp_path / "extra.bin").write_bytes(b"x" * 10)
    args = BASE + ["--serialized-file", "extra.bin", "--extra-files", "model/signature.json"]
    assert run_cli(args, tmp_path) == 0
    names = zip_names(tmp_path / "squeezenet_v1.1.mar")
    assert "extra.bin" in names and names.count("signature.json") == 1


def test_python_dash_m_and_console_script_agree(model: Path, tmp_path: Path):
    from conftest import run_cli_process
    r = run_cli_process(BASE + ["--export-path", "a"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert run_cli(BASE + ["--export-path", "b"], tmp_path) == 0
    assert (tmp_path / "a/squeezenet_v1.1.mar").read_bytes() == (tmp_path / "b/squeezenet_v1.1.mar").read_bytes()
