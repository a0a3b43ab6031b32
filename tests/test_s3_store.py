"""doit publish, against a real S3 server (SeaweedFS on loopback)."""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

from doit_helpers import doit, make_project
from fault_proxy import FaultProxy
from s3_server import BUCKET, RO, free_ports

MODELS = {"m0", "m1", "m2"}


def project_with_store(root: Path, prefix: str) -> Path:
    toml = f'\n[tool.mar_tasks.publish]\nurl = "s3://{BUCKET}/{prefix}/model-store"\n'
    project = make_project(root, models=3, extra_toml=toml)
    (project / "dodo.py").write_text("from mar_tasks import task_archive, task_publish  # noqa: F401\n")
    return project


def fresh_copy(src: Path, dst: Path) -> Path:
    """What a CI runner checks out: the sources, no archives, no doit state."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("store", ".doit.db*", ".mar_tasks.*"))
    return dst


def summary(out: str) -> str:
    lines = re.findall(r"^mar_tasks publish: .*$", out, re.M)
    assert len(lines) == 1, out
    return lines[0]


def published(s3_server, prefix: str) -> set:
    listed = s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    return {o["Key"] for o in listed.get("Contents", [])}


def dead_endpoint_env() -> dict:
    (port,) = free_ports(1)  # nothing listens there
    return {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
            "MAR_TASKS_S3_CONNECT_TIMEOUT": "1"}


def wait_for(what: str, seen, timeout: float) -> None:
    """Wait until `seen()` is true; fail the test (not pass it) if it never is."""
    deadline = time.monotonic() + timeout
    while not seen():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never happened within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:12]


def test_publish_only_what_changed_even_from_a_fresh_clone(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "publish", env=s3_server.env())
    assert r.rc == 0, r.out
    assert summary(r.out) == "mar_tasks publish: 3 published, 0 unchanged, 0 errors"
    assert f"published s3://{BUCKET}/{prefix}/model-store/m0.mar" in r.out  # the whole address
    assert not (a / "store").exists()  # publishing wrote no local archive, and left no folder
    assert doit(a, "archive").rc == 0
    s3 = s3_server.client()
    key = f"{prefix}/model-store/m0.mar"
    before = s3.head_object(Bucket=BUCKET, Key=key)
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == (a / "store/m0.mar").read_bytes()  # what doit archive builds, byte for byte
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert "MAR-INF/MANIFEST.json" in z.namelist()
    c = fresh_copy(a, tmp_path / "c")
    r = doit(c, "publish", env=s3_server.env())
    assert r.rc == 0, r.out
    assert summary(r.out) == "mar_tasks publish: 0 published, 3 unchanged, 0 errors"
    assert not (c / "store").exists()  # nothing was built
    after = s3.head_object(Bucket=BUCKET, Key=key)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    (c / "zoo/m1/weights.bin").write_bytes(b"new" * 100)
    r = doit(c, "publish", env=s3_server.env())
    assert r.rc == 0, r.out
    assert summary(r.out) == "mar_tasks publish: 1 published, 2 unchanged, 0 errors", r.out


def test_publish_leaves_local_archives_untouched(s3_server, tmp_path: Path, prefix: str):
    """Publishing after `doit archive` neither replaces nor rewrites the local archives,
    so the next `doit archive` has nothing to do."""
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "archive")
    assert r.rc == 0 and r.built == MODELS, r.out
    before = {m: os.stat(a / f"store/{m}.mar") for m in MODELS}
    r = doit(a, "publish", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks publish: 3 published, 0 unchanged, 0 errors", r.out
    for m in MODELS:
        st = os.stat(a / f"store/{m}.mar")
        assert (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) == \
            (before[m].st_ino, before[m].st_mtime_ns, before[m].st_ctime_ns), m
    assert sorted(os.listdir(a / "store")) == ["m0.mar", "m1.mar", "m2.mar"]  # no temporary left
    r = doit(a, "archive")
    assert r.rc == 0 and r.built == set() and r.skipped == MODELS, r.out


def test_publish_ignores_a_foreign_file_at_the_local_target(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    (a / "store").mkdir()
    (a / "store/m0.mar").write_bytes(b"someone else's file")
    r = doit(a, "publish", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks publish: 3 published, 0 unchanged, 0 errors", r.out
    assert (a / "store/m0.mar").read_bytes() == b"someone else's file"


def test_publish_with_read_only_credentials_fails_each_task_with_one_line(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "--continue", "publish", env=s3_server.env(RO), check=False)
    assert r.rc != 0 and "Traceback" not in r.out
    assert len(re.findall(r"mar_tasks: m\d: cannot publish to .*refused the upload", r.out)) == 3, r.out
    assert published(s3_server, prefix) == set()


def test_publish_to_a_dead_store_fails_with_one_warning(tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "--continue", "publish", env=dead_endpoint_env(), check=False)
    assert r.rc != 0 and "Traceback" not in r.out, r.out
    assert r.out.count("publish store unusable") == 1, r.out
    assert summary(r.out) == "mar_tasks publish: 0 published, 0 unchanged, 3 errors"
    r = doit(a, "archive", env=dead_endpoint_env())  # local archives never need the store
    assert r.rc == 0 and r.built == MODELS, r.out


def test_shards_split_the_models_stably(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    seen = []
    for k in (1, 2):
        r = doit(a, "archive", "--shard", f"{k}/2", env=s3_server.env())
        assert r.rc == 0, r.out
        seen.append(r.built)
    assert seen[0] | seen[1] == MODELS and not seen[0] & seen[1]
    for k in (1, 2):
        r = doit(a, "publish", "--shard", f"{k}/2", env=s3_server.env())
        assert r.rc == 0, r.out
    assert published(s3_server, prefix) == {f"{prefix}/model-store/{m}.mar" for m in MODELS}
    r = doit(a, "archive", "--shard", "3/2", check=False)
    assert r.rc != 0 and "not K/N" in r.out and "Traceback" not in r.out


def test_parallel_workers_publish(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "-n", "2", "-P", "process", "publish", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks publish: 3 published, 0 unchanged, 0 errors", r.out
    b = fresh_copy(a, tmp_path / "b")
    r = doit(b, "-n", "2", "-P", "process", "publish", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks publish: 0 published, 3 unchanged, 0 errors", r.out


@pytest.mark.parametrize("mode", ["reset", "stall"])
def test_misbehaving_store_fails_publish_in_bounded_time(s3_server, tmp_path: Path, prefix: str, mode: str):
    """Through a proxy that resets or stalls: each model fails with one line, one warning,
    the run's time bounded by the timeouts, no partial object visible."""
    a = project_with_store(tmp_path / "a", prefix)
    up = urlparse(s3_server.endpoint)
    with FaultProxy((up.hostname, up.port), mode) as proxy:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL_S3": proxy.endpoint,
               "MAR_TASKS_S3_CONNECT_TIMEOUT": "1", "MAR_TASKS_S3_READ_TIMEOUT": "1"}
        t = time.monotonic()
        r = doit(a, "--continue", "publish", env=env, check=False)
        took = time.monotonic() - t
    assert r.rc != 0 and "Traceback" not in r.out, r.out
    assert r.out.count("publish store unusable") == 1, r.out
    assert took < 60, took
    assert published(s3_server, prefix) == set()


def test_two_runners_publishing_the_same_models_at_once(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    b = fresh_copy(a, tmp_path / "b")
    procs = [subprocess.Popen([sys.executable, "-m", "doit", "publish"], cwd=p, env=s3_server.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in (a, b)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # Either runner may find the other's object already there and skip it: build locally to
    # compare (the archives are reproducible).
    assert doit(a, "archive", env=s3_server.env()).rc == 0
    s3 = s3_server.client()
    for m in MODELS:
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/model-store/{m}.mar")
        assert body["Body"].read() == (a / f"store/{m}.mar").read_bytes()
    r = doit(a, "publish", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks publish: 0 published, 3 unchanged, 0 errors"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupted_multipart_upload_leaves_no_object(s3_server, tmp_path: Path, prefix: str, sig: str):
    """An archive over the multipart threshold, uploaded at ~1 MiB/s, interrupted: no object
    appears under its key (on SIGINT the multipart upload is aborted too), the local
    archive is untouched, and the next run removes what a killed run left."""
    from mar_tasks.store.s3_store import MULTIPART_FROM
    a = project_with_store(tmp_path / "a", prefix)
    (a / "zoo/m0/weights.bin").write_bytes(os.urandom(MULTIPART_FROM + (4 << 20)))
    assert doit(a, "archive:m0").rc == 0
    local = (a / "store/m0.mar").read_bytes()
    up = urlparse(s3_server.endpoint)
    s3 = s3_server.client()
    with FaultProxy((up.hostname, up.port), "slow") as proxy:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL_S3": proxy.endpoint}
        p = subprocess.Popen([sys.executable, "-m", "doit", "publish:m0"], cwd=a, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_for("the multipart upload", lambda: s3.list_multipart_uploads(
            Bucket=BUCKET, Prefix=f"{prefix}/").get("Uploads"), 120)
        time.sleep(1)
        p.send_signal(getattr(signal, sig))
        p.communicate(timeout=60)
    time.sleep(1)
    assert published(s3_server, prefix) == set()
    pending = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{prefix}/").get("Uploads", [])
    if sig == "SIGINT":
        assert pending == [], pending  # aborted, not left for the lifecycle rule
    assert (a / "store/m0.mar").read_bytes() == local
    r = doit(a, "archive:m0", "--force")  # a build in that folder clears a dead run's temporary
    assert r.rc == 0, r.out
    assert sorted(os.listdir(a / "store")) == ["m0.mar"]
