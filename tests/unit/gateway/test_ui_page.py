"""The page at / (gateway/ui.py): its files with their content types and a strict CSP, nothing else."""

from __future__ import annotations

import re

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import ApiKeys
from infra.settings.gateway import GatewaySettings


@pytest.fixture
async def http():
    app = create_app(GatewaySettings(), redis=None, producer=None, api_keys=ApiKeys([]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client


async def test_page_and_assets_have_their_types_and_a_strict_csp(http):
    for path, kind in (("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")):
        answer = await http.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind), path
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = (await http.get("/")).text
    assert '<script src="/ui/app.js"' in page and not re.search(r"<script>|\son\w+=|style=", page)  # nothing inline


async def test_only_the_pages_files_are_served(http):
    for path in ("/ui/../app.py", "/ui/ui.py", "/ui/nothing.js", "/ui/%2e%2e%2fapp.py"):
        assert (await http.get(path)).status_code == 404, path


async def test_the_script_never_puts_the_key_in_a_url(http):
    script = (await http.get("/ui/app.js")).text
    assert "sessionStorage" in script and "localStorage" not in script
    assert "api_key" not in script and "?token=" in script and "Authorization" in script
