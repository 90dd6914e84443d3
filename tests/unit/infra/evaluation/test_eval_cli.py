"""`genloom eval --quick` end to end into a temporary folder, on the committed image model."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from infra.cli.main import app


def test_quick_eval_writes_a_sane_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--only", "image", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "report.json").read_text())
    image = figures["image"]
    assert image["available"] and image["images"] == 180  # 18 caption forms x 10 digits, once each
    assert image["accuracy"] > 0.8
    assert len(image["per_digit"]) == 10
    assert image["judge_accuracy_on_real"] > 0.95
    # the drawn digits are further from the real ones than real training digits are, but not far
    assert image["fid"]["judge_floor"] < image["fid"]["judge"] < 50 * max(image["fid"]["judge_floor"], 1.0)
    report = (tmp_path / "report.md").read_text()
    assert "conditional accuracy" in report and "FID, judge's space" in report
    assert "genloom eval --only image --threads 1 --quick" in report  # how to reproduce it
    for png in ("loss_curves.png", "image_samples.png", "image_per_digit.png"):
        assert (tmp_path / png).stat().st_size > 1000 and f"]({png})" in report
    assert figures["run"]["loadavg_start"]  # the machine's load is recorded


def test_eval_refuses_an_unknown_section(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--only", "smell", "--out", str(tmp_path)])
    assert result.exit_code != 0
