"""`genloom train image`: trains, exports a servable folder, and resumes when rerun."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from infra.cli.main import app
from infra.models.storage import PRETRAINED_WEIGHTS, read_marker


def test_train_image_exports_and_a_rerun_resumes(tmp_path: Path) -> None:
    args = ["train", "image", "--steps", "2", "--batch-size", "4", "--threads", "1", "--no-evaluate",
            "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "model")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    marker = read_marker(tmp_path / "model")
    assert marker is not None and marker["weights"] == PRETRAINED_WEIGHTS
    record = json.loads((tmp_path / "model" / "training.json").read_text())
    assert record["step"] == 2 and record["command"].startswith("genloom train image --steps 2")
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "resuming" in again.output and "at step 2" in again.output
