"""End to end: a real TorchServe 0.12 serves our archives in every format.

TorchServe needs Java and torch, which the package does not depend on, so this runs only
when ``MAR_TASKS_TORCHSERVE`` names a ``torchserve`` executable (README, "Serving with
TorchServe"); ``.ci/run`` installs torch and torchserve in a venv of their own and sets it.
It listens on loopback only, on ports free when it starts (HTTP, gRPC and the workers'
sockets), keeps its pid file in its own temporary folder, and stops itself.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli
from s3_server import free_ports

TORCHSERVE = os.environ.get("MAR_TASKS_TORCHSERVE")
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not TORCHSERVE, reason="set MAR_TASKS_TORCHSERVE=/path/to/torchserve")


def _post(url: str, body: bytes, content_type: str = "application/octet-stream") -> dict:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # the server's answer says why
        raise AssertionError(f"{url}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None


def test_torchserve_serves_every_format(tmp_path: Path):
    store = tmp_path / "store"
    sq = ["--model-path", str(REPO / "examples/squeezenet"), "--handler", "mxnet_vision_service:handle",
          "--export-path", str(store), "-q"]
    for name, fmt in [("sq_zip", "default"), ("sq_tgz", "tgz"), ("sq_store", "zip-store"), ("sq_dir", "no-archive")]:
        assert run_cli(["--model-name", name, "--archive-format", fmt, *sq], tmp_path) == 0
    mnist = REPO / "examples/mnist"
    assert run_cli(["--model-name", "mnist", "--model-file", str(mnist / "model.py"), "--serialized-file",
                    str(mnist / "mnist_state.bin"), "--handler", str(mnist / "mnist_handler.py"),
                    "--export-path", str(store), "-q"], tmp_path) == 0
    inference, management, metrics, grpc_inference, grpc_management, worker = free_ports(6)
    (tmp_path / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{inference}\nmanagement_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{metrics}\ngrpc_inference_port={grpc_inference}\n"
        f"grpc_management_port={grpc_management}\ninitial_worker_port={worker}\n"
        "disable_token_authorization=true\n"
        "enable_model_api=true\ndefault_workers_per_model=1\ninstall_py_dep_per_model=false\n"
        f"python={Path(TORCHSERVE).parent / 'python'}\n")  # workers run in TorchServe's venv
    # its pid file goes to the temporary folder: another TorchServe elsewhere is not ours
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    ts = [TORCHSERVE, "--ts-config", "config.properties"]
    subprocess.run(ts + ["--start", "--ncs", "--model-store", str(store), "--disable-token-auth", "--models",
                         "sq_zip=sq_zip.mar", "sq_tgz=sq_tgz.tar.gz", "sq_store=sq_store.mar", "mnist=mnist.mar"],
                   cwd=tmp_path, env=env, check=True, timeout=60,  # the server keeps no pipe of ours open
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mgmt = f"http://127.0.0.1:{management}"
        deadline = time.time() + 120
        while True:
            try:
                _post(f"{mgmt}/models?url=sq_dir&initial_workers=1&synchronous=true", b"")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        payload = (REPO / "examples/squeezenet/synset.txt").read_bytes()
        answers = {}
        for name in ("sq_zip", "sq_tgz", "sq_store", "sq_dir"):
            for _ in range(60):  # workers may still be starting
                try:
                    answers[name] = _post(f"http://127.0.0.1:{inference}/predictions/{name}", payload)
                    break
                except OSError:
                    time.sleep(1)
        assert len(answers) == 4 and len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1
        assert len(answers["sq_zip"]) == 3  # top-3 labels
        digit = _post(f"http://127.0.0.1:{inference}/predictions/mnist", json.dumps([0.5] * 784).encode(),
                      "application/json")
        assert set(digit) == {"digit"} and 0 <= digit["digit"] <= 9
        shutil.rmtree(tmp_path / "logs", ignore_errors=True)  # kept when the test fails
    finally:
        subprocess.run(ts + ["--stop"], cwd=tmp_path, env=env, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
