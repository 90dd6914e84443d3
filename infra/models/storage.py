"""Model folders genloom builds itself (the tiny random pipelines): where they go, the marker that
labels their weights, and how a folder is built once, atomically, when processes race."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

#: Label of pipelines whose weights are randomly initialised (tests, embedded default).
RANDOM_WEIGHTS = "RANDOM_WEIGHTS"
#: Label of pipelines loaded from trained weights.
PRETRAINED_WEIGHTS = "PRETRAINED_WEIGHTS"

#: Marker file written into folders built by genloom.
MARKER_FILE = "genloom_model.json"

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "genloom" / "models"


def read_marker(folder: str | os.PathLike[str]) -> dict[str, object] | None:
    path = Path(folder) / MARKER_FILE
    if not path.is_file():
        return None
    data: dict[str, object] = json.loads(path.read_text())
    return data


def save_once(
    path: str | os.PathLike[str], marker: dict[str, object], build: Callable[[Path], None]
) -> Path:
    """Build into a temp folder beside ``path`` and rename it into place.

    Reuses ``path`` when its marker equals ``marker``; a stale folder is replaced. When two
    processes race, the first rename wins and the loser's copy is discarded.
    """
    target = Path(path).expanduser()
    if read_marker(target) == marker:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    try:
        build(tmp)
        (tmp / MARKER_FILE).write_text(json.dumps(marker, sort_keys=True))
        if target.exists():
            stale = target.parent / f".{target.name}.stale-{uuid.uuid4().hex}"
            target.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if read_marker(target) != marker:  # lost a race to a different build
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
