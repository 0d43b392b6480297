"""Where deliveries go: a signed HTTPS webhook, or a Kinesis stream.

Webhook calls are signed with HMAC-SHA256 over `<timestamp>.<body>` under a secret shared
with the receiver: `X-Trigger-Timestamp` (Unix seconds) and `X-Trigger-Signature`
(`v1=<hex>`). A receiver checks both with `verify` (docs/channels.md has the recipe in a
few lines for any language) and refuses a timestamp more than 5 minutes away from its own
clock, so a captured call cannot be replayed later. Each call also carries
`Idempotency-Key`: the same delivery may arrive more than once (at least once), never with
another key.

A send ends in one of three ways: delivered; `Retry` (the receiver is away, busy or
misconfigured: 401, 403, 404, 408, 429, 5xx, no answer; the outbox tries again later); or
`Refused` (any other answer: this delivery will not be taken; it is set aside).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..http_deadline import post

SIGNATURE_HEADER = "X-Trigger-Signature"
TIMESTAMP_HEADER = "X-Trigger-Timestamp"
TOLERANCE_S = 300  # a receiver refuses calls signed further from its clock than this
# the receiver is away, misconfigured or busy: the delivery is fine, try again later
RETRY_STATUSES = frozenset((401, 403, 404, 408, 425, 429))
LOOPBACK_HOSTS = frozenset(("127.0.0.1", "::1", "localhost"))
MAX_TIMESTAMP_DIGITS = 12  # Unix seconds (year 33658 and before)


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str | None, sig: str | None, body: bytes,
           now_s: float | None = None, tolerance_s: int = TOLERANCE_S) -> bool:
    """The receiver's check: the signature is ours over this body and timestamp, and the
    timestamp is within `tolerance_s` of the receiver's clock."""
    if not timestamp or not sig or not (timestamp.isascii() and timestamp.isdigit()) or \
            len(timestamp) > MAX_TIMESTAMP_DIGITS:  # int() refuses over 4,300 digits
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), sig)


@dataclass(frozen=True)
class Retry:
    reason: str
    after_s: float = 0.0  # the wait the receiver asked for (Retry-After), if it did


@dataclass(frozen=True)
class Refused:
    reason: str


Sent = None  # a send that returns None was delivered


class Sink(Protocol):
    name: str

    def send(self, key: str, body: bytes) -> Retry | Refused | None: ...


def check_webhook_url(url: str) -> str:
    """The URL, if deliveries may go there: https, or http to this machine (tests, a
    local relay). Raises ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url!r}: expected an https:// URL")
    try:
        parts.port  # noqa: B018 - urllib checks the port when it is read
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 0 to 65535") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: no credentials in the URL; the receiver checks the "
                         "signature (X-Trigger-Signature) instead")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{url!r}: deliveries name visitors; send them over https "
                         "(http only to 127.0.0.1 or localhost)")
    return url


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, secret: bytes, timeout_s: float = 5.0) -> None:
        parts = urlsplit(check_webhook_url(url))
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s
        self._host = parts.hostname or ""

    def send(self, key: str, body: bytes) -> Retry | Refused | None:
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(self._secret, timestamp, body),
                   "User-Agent": "edge-trigger-engine"}
        try:  # a receiver trickling its answer is cut off when the deadline runs out
            answer = post(self.url, body, headers, self._timeout_s)
        except TimeoutError as exc:  # `post` tells the deadline's cut from a hang-up
            return Retry(f"webhook {self._host}: no whole answer within the edge's "
                         f"{self._timeout_s:g} s deadline ({exc})"[:300])
        except (OSError, http.client.HTTPException) as exc:
            return Retry(f"webhook {self._host}: {type(exc).__name__}: {exc}"[:300])
        status = answer.status
        if 200 <= status < 300:
            return Sent
        if status in RETRY_STATUSES or status >= 500:
            return Retry(f"webhook answered {status}", answer.retry_after or 0.0)
        return Refused(f"webhook answered {status}")


class KinesisSink:
    name = "kinesis"

    def __init__(self, stream: str, endpoint_url: str | None = None, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            # one short attempt per send: the dispatcher owns retries and their backoff
            client = boto3.client("kinesis", endpoint_url=endpoint_url or None,
                                  config=Config(connect_timeout=3, read_timeout=5,
                                                retries={"total_max_attempts": 1}))
        self.stream = stream
        self.client = client

    def send(self, key: str, body: bytes) -> Retry | Refused | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # the key as partition key: one delivery's retries land on one shard, in order
            self.client.put_record(StreamName=self.stream, Data=body, PartitionKey=key[:256])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ValidationException", "InvalidArgumentException"):
                return Refused(f"kinesis refused the record: {code}")
            return Retry(f"kinesis stream {self.stream}: {code or exc}"[:300])
        except BotoCoreError as exc:
            return Retry(f"kinesis stream {self.stream}: {exc}"[:300])
        return Sent
