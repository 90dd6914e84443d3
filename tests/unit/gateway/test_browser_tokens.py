"""Browser tokens (gateway/tokens.py): scoped to one job of one tenant, expiring, tamper-evident."""

from __future__ import annotations

import base64

import pytest

from gateway.errors import ApiError
from gateway.tokens import TOKEN_PREFIX, BrowserTokens


def _refused(tokens: BrowserTokens, token: str, job_id: str, now: float = 1000.0) -> ApiError:
    with pytest.raises(ApiError) as caught:
        tokens.tenant_for(token, job_id, now=now)
    return caught.value


def test_a_token_names_its_tenant_for_its_job_until_it_expires() -> None:
    tokens = BrowserTokens(b"secret", ttl_s=60)
    grant = tokens.issue("t-a", "job:1", now=1000)
    assert grant.token.startswith(TOKEN_PREFIX) and grant.expires_at == 1060
    assert tokens.tenant_for(grant.token, "job:1", now=1059) == "t-a"
    expired = _refused(tokens, grant.token, "job:1", now=1060)
    assert (expired.status, expired.code) == (401, "unauthorized") and "expired" in expired.message


def test_another_jobs_token_is_forbidden() -> None:
    tokens = BrowserTokens(b"secret", ttl_s=60)
    err = _refused(tokens, tokens.issue("t-a", "job-1", now=1000).token, "job-2")
    assert (err.status, err.code) == (403, "forbidden")


def test_tampered_foreign_or_malformed_tokens_are_unauthorized() -> None:
    tokens = BrowserTokens(b"secret", ttl_s=60)
    token = tokens.issue("t-a", "job-1", now=1000).token
    payload, _, mac = token.removeprefix(TOKEN_PREFIX).partition(".")
    forged_payload = base64.urlsafe_b64encode(b"99999:t-b:job-1").rstrip(b"=").decode()
    for bad in (TOKEN_PREFIX + forged_payload + "." + mac,  # another tenant, the old mac
                token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
                BrowserTokens(b"other", ttl_s=60).issue("t-a", "job-1", now=1000).token,  # another gateway's key
                BrowserTokens(None, ttl_s=60).issue("t-a", "job-1", now=1000).token,
                "glk_an-api-key", "", TOKEN_PREFIX, TOKEN_PREFIX + payload):
        err = _refused(tokens, bad, "job-1")
        assert (err.status, err.code) == (401, "unauthorized"), bad


def test_the_same_secret_verifies_across_instances_and_the_token_holds_no_secret() -> None:
    one, two = BrowserTokens(b"shared", ttl_s=60), BrowserTokens(b"shared", ttl_s=60)
    token = one.issue("t-a", "j", now=1000).token
    assert two.tenant_for(token, "j", now=1001) == "t-a"
    assert b"shared" not in base64.urlsafe_b64decode(token.removeprefix(TOKEN_PREFIX).split(".")[0] + "==")
