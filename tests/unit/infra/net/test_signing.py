"""Webhook signatures: per-tenant keys, timestamp and event id covered, stale ones rejected."""

from __future__ import annotations

import time

from infra.net.signing import sign, tenant_secret, verify

MASTER = b"master-secret"
BODY = b'{"type":"completed"}'


def test_each_tenant_has_its_own_key():
    a, b = tenant_secret(MASTER, "t-a"), tenant_secret(MASTER, "t-b")
    assert a != b and len(a) == 64 and tenant_secret(MASTER, "t-a") == a
    assert tenant_secret(b"another master", "t-a") != a
    header = sign(a, "job:3", BODY)
    assert verify(a, "job:3", BODY, header)
    assert not verify(b, "job:3", BODY, header)  # tenant b cannot verify (or forge) tenant a's


def test_signature_covers_timestamp_event_id_and_body():
    key = tenant_secret(MASTER, "t-a")
    now = int(time.time())
    header = sign(key, "job:3", BODY, timestamp=now)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert not verify(key, "job:4", BODY, header)  # another event
    assert not verify(key, "job:3", BODY + b" ", header)
    forged = header.replace(f"t={now}", f"t={now + 1}")  # a fresher timestamp on an old signature
    assert not verify(key, "job:3", BODY, forged)
    assert not verify(key, "job:3", BODY, "sha256=" + "0" * 64) and not verify(key, "job:3", BODY, "")


def test_stale_signatures_are_replays():
    key = tenant_secret(MASTER, "t-a")
    old = sign(key, "job:3", BODY, timestamp=int(time.time()) - 3600)
    assert not verify(key, "job:3", BODY, old)
    assert verify(key, "job:3", BODY, old, tolerance_s=7200)
    assert not verify(key, "job:3", BODY, sign(key, "job:3", BODY, timestamp=int(time.time()) + 3600))
