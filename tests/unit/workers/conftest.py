"""Shared by every worker test: one torch thread, and no hub downloads."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import torch
except ImportError:  # torch-free workers (speech) still run
    pass
else:
    torch.set_num_threads(1)
