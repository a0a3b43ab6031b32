"""Where ``doit publish`` puts archives: an S3-API object store (any S3-compatible service).

boto3 is an optional extra (``pip install 'mar_tasks[s3]'``), imported only when a store is
configured, so a run without one pays nothing. Credentials come only from the standard AWS
chain (environment, ``AWS_PROFILE``, instance roles) and the endpoint from
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``; nothing here prints or stores them.

Every call has a short connect timeout and bounded retries. The first failure that is not
a plain "no such object" turns the store off for the rest of the process (one warning),
so a dead or refusing store costs at most one round of timeouts; local archives never
need the store. Uploads carry a SHA-256 checksum the server verifies; multipart uploads (over
64 MiB) are completed only after every part is sent, and are aborted by boto3 when the
upload fails or is interrupted: an object appears whole or not at all.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional
from urllib.parse import urlparse

from mar_tasks.errors import ArchiveError

MULTIPART_FROM = 64 << 20


class StoreError(Exception):
    """The store could not be used (unreachable, refused, failed); message is one line."""


@dataclass(frozen=True)
class StoreUrl:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str, what: str) -> "StoreUrl":
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ArchiveError(f"{what} {url!r} is not an s3://BUCKET/PREFIX address; fix it")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def address(self, name: str) -> str:
        """The object's whole ``s3://`` address, as messages name it."""
        return f"s3://{self.bucket}/{self.key(name)}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ArchiveError("a store is configured but boto3 is missing; "
                           "pip install 'mar_tasks[s3]'") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(connect_timeout=float(os.environ.get("MAR_TASKS_S3_CONNECT_TIMEOUT", "3")),
                    read_timeout=float(os.environ.get("MAR_TASKS_S3_READ_TIMEOUT", "30")),
                    retries={"max_attempts": 3, "mode": "standard"})
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _why(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return f"{code}" if code else f"{type(exc).__name__}: {str(exc)[:200]}"


class Store:
    """One bucket/prefix."""

    def __init__(self, url: StoreUrl) -> None:
        self.url = url
        self._s3: Any = None
        self.off: Optional[str] = None  # why the store was turned off, once it was

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = _client()
        return self._s3

    def _fail(self, exc: BaseException, doing: str) -> StoreError:
        why = f"{doing} {self.url}: {_why(exc)}"
        if self.off is None:
            self.off = why
            print(f"mar_tasks: warning: publish store unusable ({why}); "
                  "nothing more is published this run", file=sys.stderr, flush=True)
        return StoreError(why)

    def head(self, name: str) -> Optional[Dict[str, Any]]:
        """The object's size, metadata and checksum, or None if there is no such object."""
        if self.off:
            raise StoreError(self.off)
        try:
            r = self.s3.head_object(Bucket=self.url.bucket, Key=self.url.key(name), ChecksumMode="ENABLED")
        except Exception as exc:  # botocore's errors have no common public base we can import lazily
            code = _why(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(exc, "looking up") from None
        return {"size": r["ContentLength"], "metadata": r.get("Metadata", {}),
                "etag": r.get("ETag"), "last_modified": r.get("LastModified")}

    def upload(self, path: str, name: str, metadata: Dict[str, str]) -> None:
        """Put a finished file under `name` (StoreError if the store refuses or fails)."""
        if self.off:
            raise StoreError(self.off)
        from boto3.s3.transfer import TransferConfig
        try:
            self.s3.upload_file(path, self.url.bucket, self.url.key(name), ExtraArgs={
                "Metadata": metadata, "ChecksumAlgorithm": "SHA256"},
                Config=TransferConfig(multipart_threshold=MULTIPART_FROM, multipart_chunksize=MULTIPART_FROM))
        except Exception as exc:
            if _why(exc) == "AccessDenied" or "AccessDenied" in str(exc):
                raise StoreError(f"{self.url} refused the upload (read-only credentials?)") from None
            raise self._fail(exc, "uploading to") from None


_stores: Dict[str, Store] = {}  # one per URL per process: "off after a failure" holds for the run


def store_for(url: str) -> Store:
    """The process's one :class:`Store` for `url` (an ``s3://BUCKET/PREFIX`` address)."""
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = Store(StoreUrl.parse(url, "publish url"))
    return store
