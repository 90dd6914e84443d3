"""The fuzz client: sends one request with a whole-request deadline and records what went wrong.

A finding is a 5xx, a request that did not end within the deadline (headers and the whole body), a
broken connection, or (for schemathesis cases) an answer that contradicts the declared schema.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import requests

from tests.fuzz.settings import SEED

#: a request must be answered, body and all, within this many seconds
DEADLINE_S = 15.0


@dataclass
class Finding:
    kind: str  # server_error, hang, connection, schema
    what: str  # method and path
    detail: str


@dataclass
class FuzzLog:
    statuses: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    sent: int = 0

    def summary(self) -> str:
        kinds = Counter(f.kind for f in self.findings)
        return (f"{self.sent} requests (seed {SEED}); statuses {dict(sorted(self.statuses.items(), key=lambda kv: str(kv[0])))}; "
                f"findings {dict(kinds) or 0}")

    def report(self, limit: int = 10) -> str:
        seen: set[tuple[str, str]] = set()
        lines = []
        for f in self.findings:
            if (f.kind, f.what) in seen:
                continue
            seen.add((f.kind, f.what))
            lines.append(f"- {f.kind} {f.what}: {f.detail[:600]}")
        return "\n".join([self.summary(), *lines[:limit]])


def send(session: requests.Session, log: FuzzLog, what: str, **kwargs) -> requests.Response | None:
    """The response, body read within the deadline; None (and a finding) when there was none."""
    log.sent += 1
    start = time.monotonic()
    try:
        with session.request(**kwargs, stream=True, timeout=(5, DEADLINE_S)) as response:
            chunks = []
            for chunk in response.iter_content(8192):
                chunks.append(chunk)
                if time.monotonic() - start > DEADLINE_S:
                    log.findings.append(Finding("hang", what, f"body still streaming after {DEADLINE_S}s"))
                    log.statuses["hang"] += 1
                    return None
            response._content = b"".join(chunks)
            response._content_consumed = True
    except requests.exceptions.InvalidHeader:  # the client refused to send it: nothing was tested
        log.sent -= 1
        log.statuses["unsendable"] += 1
        return None
    except requests.Timeout:
        log.findings.append(Finding("hang", what, f"no answer within {DEADLINE_S}s"))
        log.statuses["hang"] += 1
        return None
    except requests.RequestException as exc:
        log.findings.append(Finding("connection", what, f"{type(exc).__name__}: {exc}"))
        log.statuses["connection"] += 1
        return None
    log.statuses[response.status_code] += 1
    if response.status_code >= 500:
        log.findings.append(Finding("server_error", what, f"{response.status_code} {response.text[:400]}"))
    return response
