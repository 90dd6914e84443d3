import io
import json

import pytest
import typer
from rich.console import Console

from infra.cli.jobs import EventPrinter, build_request, resolve_connection, save_connection
from schemas import parse_request


def test_flags_build_a_valid_request_per_modality():
    text = build_request("text", "hello", None, {"max_tokens": 5, "seed": 1, "job_id": "j-1", "steps": None})
    assert text == {"modality": "text", "job_id": "j-1",
                    "params": {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "seed": 1}}
    assert parse_request(text).params.max_tokens == 5
    speech = build_request("speech", "Say this.", None, {"voice": "joe"})
    assert parse_request(speech).params.input == "Say this."
    image = build_request("image", "a cat", None, {"width": 64, "height": 64, "steps": 2})
    assert parse_request(image).params.width == 64


def test_file_is_read_and_flags_override_it(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"modality": "image", "params": {"prompt": "old", "steps": 9}}))
    body = build_request("text", "new", path, {"steps": 3})
    assert body["modality"] == "image" and body["params"] == {"prompt": "new", "steps": 3}


def test_unreadable_file_is_a_clear_parameter_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(typer.BadParameter, match="cannot read"):
        build_request("text", None, bad, {})


def test_connection_comes_from_up_when_not_given(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLOOM_HOME", str(tmp_path))
    monkeypatch.delenv("GENLOOM_API_KEY", raising=False)
    monkeypatch.delenv("GENLOOM_URL", raising=False)
    with pytest.raises(typer.BadParameter, match="no API key"):
        resolve_connection(None, None)
    save_connection("http://127.0.0.1:9999", "gl-dev-x")
    assert resolve_connection(None, None) == ("http://127.0.0.1:9999", "gl-dev-x")
    assert resolve_connection("http://h:1", "k") == ("http://h:1", "k")


def test_printer_streams_tokens_inline_and_reports_terminal():
    out = io.StringIO()
    printer = EventPrinter(Console(file=out, width=120, color_system=None))
    printer.show("token", {"text": "Hel"})
    printer.show("token", {"text": "lo"})
    printer.show("completed", {"finish_reason": "stop", "usage": {"completion_tokens": 2, "images": None}})
    printer.close()
    text = out.getvalue()
    assert "Hello\n" in text and "completed (stop) {'completion_tokens': 2}" in text


def test_printer_shows_progress_and_failures():
    out = io.StringIO()
    printer = EventPrinter(Console(file=out, width=120, color_system=None))
    for step in range(1, 4):
        printer.show("progress", {"step": step, "total": 3, "stage": "denoise"})
    printer.show("failed", {"code": "invalid_size", "message": "use 64"})
    printer.close()
    text = out.getvalue()
    assert "denoise" in text and "100%" in text
    assert "failed invalid_size: use 64" in text


def test_printer_shows_where_the_gateway_serves_an_artifact():
    out = io.StringIO()
    printer = EventPrinter(Console(file=out, width=200, color_system=None), "http://127.0.0.1:8000")
    printer.show("artifact", {"index": 0, "uri": "file:///home/u/.genloom/blobs/objects/artifacts/dev/j1/image-0.png",
                              "mime_type": "image/png", "bytes": 10})
    assert "http://127.0.0.1:8000/v1/artifacts/artifacts/dev/j1/image-0.png (image/png, 10 bytes)" in out.getvalue()


def test_printer_says_what_preparation_did_without_values():
    out = io.StringIO()
    printer = EventPrinter(Console(file=out, width=200, color_system=None))
    printer.show("prepared", {"stages": ["privacy"], "redactions": {"EMAIL": 1, "CARD": 2}, "degraded": ["restore"],
                              "stage_ms": {"privacy": 3.2}})
    assert out.getvalue().strip() == "prepared by privacy: redacted 2 CARD, 1 EMAIL; degraded: restore"
