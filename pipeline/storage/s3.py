"""S3-compatible object storage back end (``s3://bucket/prefix``), through boto3.

The endpoint is configurable (``publish.s3_endpoint_url``: MinIO, Ceph, R2, a test server);
an empty one means AWS. Credentials come from settings when given, else boto3's usual chain.

Concurrency without a lock server, using S3's conditional writes:

- :meth:`S3Storage.update` is a compare-and-swap loop: read the object and its ETag, write the
  new bytes with ``If-Match: <etag>`` (``If-None-Match: *`` when it was absent), and start over
  when S3 answers 412/409 because someone else wrote in between. No update is lost.
- :meth:`S3Storage.lock` is a lock object ``<prefix>/.locks/<name>`` created with
  ``If-None-Match: *``; it carries an expiry that its holder renews while it works, so a lock
  left by a crashed publisher is taken over (with ``If-Match``) once it has expired.

Network failures and S3 5xx answers are raised as transient :class:`RecastError` so that
executors retry the stage.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.storage.base import Change, Storage, is_hidden

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("recast.storage.s3")

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
LOCK_TTL_S = 120.0
SINGLE_PUT_MAX = 16 * 1024 * 1024
"""Larger files go up in parts (multipart upload, each part retried on its own)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _transient(error: BaseException) -> RecastError | None:
    if isinstance(error, ReadTimeoutError):
        return RecastError(ErrorCode.NETWORK_TIMEOUT, f"The object store did not answer: {error}")
    if isinstance(error, ConnectionError):
        return RecastError(
            ErrorCode.NETWORK_CONNECTION, f"The object store is unreachable: {error}"
        )
    if isinstance(error, ClientError) and (
        _status(error) >= 500 or _code(error) in {"SlowDown", "RequestTimeout"}
    ):
        return RecastError(
            ErrorCode.NETWORK_SERVER_ERROR, f"The object store failed: {_code(error)}"
        )
    return None


@contextmanager
def _classified() -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        transient = _transient(error)
        if transient is not None:
            raise transient from error
        raise


class S3Storage(Storage):
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str = "",
        region: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
        public_base_url: str = "",
        client: S3Client | None = None,
    ):
        super().__init__(public_base_url)
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        if client is None:
            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint_url else {},
                connect_timeout=10,
                read_timeout=60,
            )
            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url or None,
                region_name=region or None,
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                config=config,
            )
        self.client = client

    def _key(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]):
            raise ValueError(f"storage key {key!r} is not a clean relative key")
        if parts[-1] in (".", ".."):
            raise ValueError(f"storage key {key!r} is not a clean relative key")
        return self.prefix + key

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        if path.stat().st_size <= SINGLE_PUT_MAX:  # one request; no transfer manager threads
            self._put(key, path.read_bytes(), content_type)
            return
        extra = {"ContentType": content_type} if content_type else {}
        with _classified():
            self.client.upload_file(str(path), self.bucket, self._key(key), ExtraArgs=extra)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._put(key, data, content_type)

    def _put(self, key: str, data: bytes, content_type: str | None, **condition: str) -> str:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if content_type:
            args["ContentType"] = content_type
        args.update(condition)
        with _classified():
            response = self.client.put_object(**args)
        return str(response.get("ETag", ""))

    def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            with _classified():
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
                return response["Body"].read(), str(response.get("ETag", ""))
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise

    def get_bytes(self, key: str) -> bytes | None:
        found = self._get(key)
        return None if found is None else found[0]

    def exists(self, key: str) -> bool:
        try:
            with _classified():
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        with _classified():
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        with _classified():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if not is_hidden(key):
                        keys.append(key)
        return sorted(keys)

    # -- concurrency ---------------------------------------------------------------------------

    def update(self, key: str, change: Change, content_type: str | None = None) -> bytes | None:
        for attempt in range(200):
            found = self._get(key)
            current, etag = found if found is not None else (None, "")
            new = change(current)
            if new is None:
                return current
            condition = {"IfMatch": etag} if found is not None else {"IfNoneMatch": "*"}
            try:
                self._put(key, new, content_type, **condition)
                return new
            except ClientError as error:
                if _code(error) not in _CONFLICT and _status(error) not in (409, 412):
                    raise
            time.sleep(random.uniform(0.0, min(0.2, 0.005 * 2**attempt)))
        raise RecastError(ErrorCode.STAGE_TIMEOUT, f"{key} kept changing under the update.")

    @contextmanager
    def lock(self, name: str, timeout_s: float = 600.0) -> Iterator[None]:
        key = f".locks/{name}"
        holder = _LockHolder(self, key, uuid.uuid4().hex)
        holder.acquire(timeout_s)
        try:
            yield
        finally:
            holder.release()

    def _lock_body(self, owner: str) -> bytes:
        return json.dumps({"owner": owner, "expires": time.time() + LOCK_TTL_S}).encode()


class _LockHolder:
    """One holder of an S3 lock object, renewing it from a thread while it is held."""

    def __init__(self, storage: S3Storage, key: str, owner: str):
        self.storage = storage
        self.key = key
        self.owner = owner
        self.etag = ""
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def acquire(self, timeout_s: float) -> None:
        storage = self.storage
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.etag = storage._put(
                    self.key, storage._lock_body(self.owner), "application/json", IfNoneMatch="*"
                )
                break
            except ClientError as error:
                if _code(error) not in _CONFLICT and _status(error) not in (409, 412):
                    raise
            if self._take_over_expired():
                break
            if time.monotonic() > deadline:
                raise RecastError(
                    ErrorCode.STORAGE_UNAVAILABLE, f"The lock {self.key} stayed taken."
                )
            time.sleep(random.uniform(0.01, 0.05))
        self.thread = threading.Thread(target=self._renew, daemon=True, name="s3-lock")
        self.thread.start()

    def _take_over_expired(self) -> bool:
        found = self.storage._get(self.key)
        if found is None:
            return False
        body, etag = found
        try:
            expires = float(json.loads(body)["expires"])
        except (ValueError, KeyError, TypeError):
            expires = 0.0
        if expires > time.time():
            return False
        try:
            self.etag = self.storage._put(
                self.key, self.storage._lock_body(self.owner), "application/json", IfMatch=etag
            )
        except ClientError as error:
            if (
                _code(error) in _CONFLICT
                or _status(error) in (409, 412)
                or _code(error) in _MISSING
            ):
                return False
            raise
        log.warning("took over the expired lock %s", self.key)
        return True

    def _renew(self) -> None:
        while not self.stop.wait(LOCK_TTL_S / 3):
            try:
                self.etag = self.storage._put(
                    self.key,
                    self.storage._lock_body(self.owner),
                    "application/json",
                    IfMatch=self.etag,
                )
            except (ClientError, RecastError) as error:
                log.error("could not renew the lock %s: %s", self.key, error)

    def release(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        try:
            with _classified():
                self.storage.client.delete_object(
                    Bucket=self.storage.bucket, Key=self.storage._key(self.key), IfMatch=self.etag
                )
        except ClientError as error:  # taken over after expiring: it is not ours to delete
            log.warning("lock %s was no longer ours: %s", self.key, _code(error))
