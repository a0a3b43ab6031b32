"""The shared cache and doit publish, against a real S3 server (SeaweedFS on loopback)."""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import uuid
import zipfile
from pathlib import Path

import pytest

from doit_helpers import doit, make_project
from s3_server import BUCKET, RO, free_ports


def project_with_store(root: Path, prefix: str, mode: str = "read-write", publish: bool = False,
                       extra: str = "") -> Path:
    toml = f'\n[tool.mar_tasks.cache]\nurl = "s3://{BUCKET}/{prefix}/cache"\nmode = "{mode}"\n{extra}'
    if publish:
        toml += f'\n[tool.mar_tasks.publish]\nurl = "s3://{BUCKET}/{prefix}/model-store"\n'
    project = make_project(root, models=3, extra_toml=toml)
    (project / "dodo.py").write_text("from mar_tasks import task_archive, task_publish  # noqa: F401\n")
    return project


def fresh_copy(src: Path, dst: Path) -> Path:
    """What a CI runner checks out: the sources, no archives, no doit state."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("store", ".doit.db*", ".mar_tasks.lock"))
    return dst


def summary(out: str, kind: str = "cache") -> str:
    lines = re.findall(rf"^mar_tasks {kind}: .*$", out, re.M)
    assert len(lines) == 1, out
    return lines[0]


def set_mode(project: Path, mode: str) -> None:
    toml = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(re.sub(r'mode = "[a-z-]+"', f'mode = "{mode}"', toml))


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:12]


def test_round_trip_through_the_cache(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "archive", env=s3_server.env())
    assert r.rc == 0 and r.built == {"m0", "m1", "m2"}, r.out
    assert summary(r.out) == "mar_tasks cache: 0 hits, 3 misses, 3 uploads, 0 errors"
    b = fresh_copy(a, tmp_path / "b")
    set_mode(b, "read")
    r = doit(b, "archive", env=s3_server.env(RO))
    assert r.rc == 0, r.out
    assert summary(r.out) == "mar_tasks cache: 3 hits, 0 misses, 0 uploads, 0 errors"
    for m in ("m0", "m1", "m2"):
        assert (b / f"store/{m}.mar").read_bytes() == (a / f"store/{m}.mar").read_bytes()
    assert doit(b, "archive", env=s3_server.env(RO)).built == set()  # recorded as up to date
    (b / "zoo/m1/weights.bin").write_bytes(b"changed" * 100)
    r = doit(b, "archive", env=s3_server.env(RO))
    assert r.rc == 0 and r.built == {"m1"}, r.out
    assert summary(r.out) == "mar_tasks cache: 0 hits, 1 misses, 0 uploads, 0 errors"


def test_poisoned_objects_are_rejected_and_rebuilt(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    assert doit(a, "archive", env=s3_server.env()).rc == 0
    s3 = s3_server.client()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/cache/")["Contents"])
    assert len(keys) == 3
    other = (a / "store/m2.mar").read_bytes()
    # A writer replaces two cached objects, metadata made to match: garbage, and a valid
    # mar_tasks archive of another model (so not under m2's own key, wherever it sorts).
    keys = [k for k in keys if s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() != other]
    for key, body in ((keys[0], b"garbage" * 100), (keys[1], other)):
        meta = s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
        meta["sha256"] = hashlib.sha256(body).hexdigest()
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta)
    b = fresh_copy(a, tmp_path / "b")
    set_mode(b, "read")
    r = doit(b, "archive", env=s3_server.env(RO))
    assert r.rc == 0, r.out
    assert len(re.findall(r"cache object \S+ rejected", r.out)) == 2, r.out
    assert summary(r.out) == "mar_tasks cache: 1 hits, 2 misses, 0 uploads, 0 errors"
    for m in ("m0", "m1", "m2"):  # every archive is right: two rebuilt, one fetched
        assert (b / f"store/{m}.mar").read_bytes() == (a / f"store/{m}.mar").read_bytes()


def test_read_only_credentials_in_read_write_mode(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "archive", env=s3_server.env(RO))
    assert r.rc == 0 and r.built == {"m0", "m1", "m2"}, r.out
    assert r.out.count("refused an upload") == 1, r.out  # one warning, then read-only
    listed = s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.parametrize("fail_on_error", [False, True])
def test_dead_store_builds_locally_with_one_warning(tmp_path: Path, prefix: str, fail_on_error: bool):
    extra = "fail-on-error = true\n" if fail_on_error else ""
    a = project_with_store(tmp_path / "a", prefix, extra=extra)
    (port,) = free_ports(1)  # nothing listens there
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "MAR_TASKS_S3_CONNECT_TIMEOUT": "1"}
    import os
    r = doit(a, "--continue", "archive", env={**os.environ, **env})
    assert all((a / f"store/{m}.mar").is_file() for m in ("m0", "m1", "m2")), r.out
    assert r.out.count("store unusable") == 1, r.out
    assert "Traceback" not in r.out
    assert (r.rc != 0) == fail_on_error, r.out


def test_publish_only_what_changed_even_from_a_fresh_clone(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix, publish=True)
    r = doit(a, "publish", env=s3_server.env())
    assert r.rc == 0, r.out
    assert summary(r.out, "publish") == "mar_tasks publish: 3 published, 0 unchanged, 0 errors"
    s3 = s3_server.client()
    key = f"{prefix}/model-store/m0.mar"
    before = s3.head_object(Bucket=BUCKET, Key=key)
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == (a / "store/m0.mar").read_bytes()
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert "MAR-INF/MANIFEST.json" in z.namelist()
    c = fresh_copy(a, tmp_path / "c")
    r = doit(c, "publish", env=s3_server.env())
    assert r.rc == 0, r.out
    assert summary(r.out, "publish") == "mar_tasks publish: 0 published, 3 unchanged, 0 errors"
    assert not (c / "store").exists()  # nothing was built
    after = s3.head_object(Bucket=BUCKET, Key=key)
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    (c / "zoo/m1/weights.bin").write_bytes(b"new" * 100)
    r = doit(c, "publish", env=s3_server.env())
    assert summary(r.out, "publish") == "mar_tasks publish: 1 published, 2 unchanged, 0 errors", r.out


def test_publish_with_read_only_credentials_fails_each_task_with_one_line(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix, publish=True, mode="off")
    r = doit(a, "--continue", "publish", env=s3_server.env(RO))
    assert r.rc != 0 and "Traceback" not in r.out
    assert len(re.findall(r"mar_tasks: m\d: cannot publish to", r.out)) == 3, r.out


def test_shards_split_the_models_stably(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix, mode="off")
    seen = []
    for k in (1, 2):
        r = doit(a, "archive", "--shard", f"{k}/2", env=s3_server.env())
        assert r.rc == 0, r.out
        seen.append(r.built)
    assert seen[0] | seen[1] == {"m0", "m1", "m2"} and not seen[0] & seen[1]
    r = doit(a, "archive", "--shard", "3/2")
    assert r.rc != 0 and "not K/N" in r.out and "Traceback" not in r.out


def test_parallel_workers_share_the_cache(s3_server, tmp_path: Path, prefix: str):
    a = project_with_store(tmp_path / "a", prefix)
    r = doit(a, "-n", "2", "-P", "process", "archive", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks cache: 0 hits, 3 misses, 3 uploads, 0 errors", r.out
    b = fresh_copy(a, tmp_path / "b")
    r = doit(b, "-n", "2", "-P", "process", "archive", env=s3_server.env())
    assert r.rc == 0 and summary(r.out) == "mar_tasks cache: 3 hits, 0 misses, 0 uploads, 0 errors", r.out


@pytest.mark.parametrize("mode", ["reset", "stall", "truncate"])
def test_misbehaving_store_never_breaks_a_build(s3_server, tmp_path: Path, prefix: str, mode: str):
    """Through a proxy that resets, stalls or truncates: every archive builds locally, one
    warning, exit 0, the run's time bounded by the timeouts, no partial object visible."""
    import time
    from urllib.parse import urlparse
    from fault_proxy import FaultProxy
    a = project_with_store(tmp_path / "a", prefix)
    if mode == "truncate":  # a warm cache, read through a proxy that cuts every download
        assert doit(a, "archive", env=s3_server.env()).rc == 0
        a = fresh_copy(a, tmp_path / "b")
        set_mode(a, "read")
    up = urlparse(s3_server.endpoint)
    with FaultProxy((up.hostname, up.port), mode) as proxy:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL_S3": proxy.endpoint,
               "MAR_TASKS_S3_CONNECT_TIMEOUT": "1", "MAR_TASKS_S3_READ_TIMEOUT": "1"}
        t = time.monotonic()
        r = doit(a, "archive", env=env)
        took = time.monotonic() - t
    assert r.rc == 0 and r.built == {"m0", "m1", "m2"}, r.out
    assert r.out.count("store unusable") == 1 and "Traceback" not in r.out, r.out
    assert took < 60, took
    assert doit(a, "archive", env=s3_server.env()).built == set()  # recorded as built
    s3 = s3_server.client()
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/").get("Contents", []):
        body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])
        data = body["Body"].read()
        assert hashlib.sha256(data).hexdigest() == body["Metadata"]["sha256"], obj["Key"]


def test_killed_during_a_download_leaves_no_torn_archive(s3_server, tmp_path: Path, prefix: str):
    import os
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import urlparse
    from fault_proxy import FaultProxy
    a = project_with_store(tmp_path / "a", prefix)
    (a / "zoo/m0/weights.bin").write_bytes(os.urandom(24 << 20))  # ~24 s at the proxy's pace
    assert doit(a, "archive", env=s3_server.env()).rc == 0
    b = fresh_copy(a, tmp_path / "b")
    set_mode(b, "read")
    up = urlparse(s3_server.endpoint)
    with FaultProxy((up.hostname, up.port), "slow") as proxy:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL_S3": proxy.endpoint}
        p = subprocess.Popen([sys.executable, "-m", "doit", "archive:m0"], cwd=b, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(n.startswith(".mar_tasks-") for n in
                                                      (os.listdir(b / "store") if (b / "store").exists() else [])):
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the download
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not (b / "store/m0.mar").exists()  # nothing torn at the target
    r = doit(b, "archive", env=s3_server.env())
    assert r.rc == 0, r.out
    assert (b / "store/m0.mar").read_bytes() == (a / "store/m0.mar").read_bytes()
    assert [n for n in os.listdir(b / "store") if n.startswith(".")] == []  # the killed temporary went


def test_two_runners_publishing_the_same_models_at_once(s3_server, tmp_path: Path, prefix: str):
    import subprocess
    import sys
    a = project_with_store(tmp_path / "a", prefix, publish=True)
    b = fresh_copy(a, tmp_path / "b")
    procs = [subprocess.Popen([sys.executable, "-m", "doit", "publish"], cwd=p, env=s3_server.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in (a, b)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # Either runner may find the other's object already there and skip it: build locally to
    # compare (the archives are reproducible).
    assert doit(a, "archive", env=s3_server.env()).rc == 0
    s3 = s3_server.client()
    for m in ("m0", "m1", "m2"):
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/model-store/{m}.mar")
        assert body["Body"].read() == (a / f"store/{m}.mar").read_bytes()
    r = doit(a, "publish", env=s3_server.env())
    assert summary(r.out, "publish") == "mar_tasks publish: 0 published, 3 unchanged, 0 errors"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_multipart_upload_leaves_no_object(s3_server, tmp_path: Path, prefix: str, sig: str):
    """An archive over the multipart threshold, uploaded at ~1 MiB/s, interrupted: no object
    appears under its key (and on SIGINT the multipart upload is aborted too)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import urlparse
    from fault_proxy import FaultProxy
    from mar_tasks.store.s3_store import MULTIPART_FROM
    a = project_with_store(tmp_path / "a", prefix)
    (a / "zoo/m0/weights.bin").write_bytes(os.urandom(MULTIPART_FROM + (4 << 20)))
    up = urlparse(s3_server.endpoint)
    s3 = s3_server.client()
    with FaultProxy((up.hostname, up.port), "slow") as proxy:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL_S3": proxy.endpoint}
        p = subprocess.Popen([sys.executable, "-m", "doit", "archive:m0"], cwd=a, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the upload has started
            if s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{prefix}/").get("Uploads"):
                break
            time.sleep(0.2)
        time.sleep(2)
        p.send_signal(getattr(signal, sig))
        p.communicate(timeout=60)
    time.sleep(1)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")
    pending = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{prefix}/").get("Uploads", [])
    if sig == "SIGINT":
        assert pending == [], pending  # aborted, not left for the lifecycle rule
