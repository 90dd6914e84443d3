"""DDPM training of the digit model, seeded and resumable.

Every random draw (batch, caption form, caption dropout, timestep, noise) comes from one
generator whose state is saved in each checkpoint, and the learning rate is constant after a
warm-up, so a run stopped at a checkpoint and resumed ends with the same weights as one that never
stopped, and a run of N steps is the first N steps of any longer run.

Data-parallel training (`torch.distributed`, gloo) keeps that: every process draws the same full
batch from the same generator and trains on its share (every world-th sample), then the gradients
(and the loss, for the record) are averaged in one all-reduce per step, so each process takes the
step one process would have taken on the whole batch, up to float summation order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import Any
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel

from infra.models.storage import MARKER_FILE, PRETRAINED_WEIGHTS

from . import IMAGE_BUILDER

from .data import TRAIN_FORMS, Digits, captions, load_digits
from .model import TextConditioner, digit_scheduler, digit_unet

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100  #: steps of linear warm-up, then constant
    caption_dropout: float = 0.1  #: share of samples trained unconditionally (for guidance)
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 250
    threads: int = 2


def caption_table(text: TextConditioner) -> torch.Tensor:
    """(10, forms, 384): the embedding of every training caption form of every digit."""
    pairs = captions(TRAIN_FORMS)
    vectors = text.encode([c for _, c in pairs])[:, 0]
    return vectors.reshape(10, len(TRAIN_FORMS), -1)


class ImageKind:
    """What the trainer learns to draw: one digit image per caption (the video kind is in video.py)."""

    builder = IMAGE_BUILDER
    defaults: dict[str, object] = {"steps": 25, "guidance": 2.0, "scheduler": "ddim"}

    @staticmethod
    def make_unet() -> UNet2DConditionModel:
        return digit_unet()

    @staticmethod
    def table(text: TextConditioner) -> torch.Tensor:
        return caption_table(text)

    @staticmethod
    def batch(data: Digits, table: torch.Tensor, g: torch.Generator,
              size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x0, caption embedding, conditioning images or None) of ``size`` training samples, drawn
        from ``g``. The conditioning images (the video model's keyframe) are concatenated to the
        noisy pixels as extra input channels; the image model has none."""
        idx = torch.randint(0, len(data.labels), (size,), generator=g)
        x0, labels = data.images[idx], data.labels[idx]
        forms = torch.randint(0, table.shape[1], (size,), generator=g)
        return x0, table[labels, forms].clone(), None

    @staticmethod
    def export_files(folder: Path) -> None:
        """Files of the exported model beside its weights (the video model names its keyframe model)."""


def _lr(config: TrainConfig, step: int) -> float:
    return config.lr * min(1.0, (step + 1) / config.warmup)


class Trainer:
    """One training run in ``out_dir``: checkpoints there, and the final model in ``out_dir/model``."""

    def __init__(self, config: TrainConfig, out_dir: Path, text: TextConditioner,
                 data: Digits | None = None, *, rank: int = 0, world: int = 1, kind: Any = ImageKind) -> None:
        if config.batch_size % world:
            raise ValueError(f"batch size {config.batch_size} does not split over {world} processes")
        self.config = config
        self.rank, self.world = rank, world
        self.out_dir = Path(out_dir)
        self.kind = kind
        self.data = data or load_digits("train")
        self.table = kind.table(text)
        torch.manual_seed(config.seed)  # the UNet's initial weights
        self.unet = kind.make_unet()
        self.ema = kind.make_unet()
        self.ema.load_state_dict(self.unet.state_dict())
        self.ema.requires_grad_(False)
        self.noise = DDPMScheduler.from_config(digit_scheduler().config)
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=config.lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.losses: list[float] = []  #: mean loss of each step

    # -- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write the run's state (rank 0 only: every process holds the same)."""
        path = self.out_dir / CHECKPOINT_FILE
        if self.rank != 0:
            return path
        tmp = path.with_suffix(".tmp")
        torch.save({"unet": self.unet.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                    "gen": self.gen.get_state(), "step": self.step, "losses": self.losses,
                    "config": asdict(self.config)}, tmp)
        os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint whole
        return path

    def resume(self) -> bool:
        """Load the last checkpoint in ``out_dir``, if any; True when one was loaded."""
        path = self.out_dir / CHECKPOINT_FILE
        if not path.is_file():
            return False
        state = torch.load(path, weights_only=True)
        saved = {k: v for k, v in state["config"].items() if k not in ("steps", "checkpoint_every", "threads")}
        mine = {k: v for k, v in asdict(self.config).items() if k in saved}
        if saved != mine:
            raise ValueError(f"the checkpoint in {self.out_dir} was trained with {saved}, not {mine}: "
                             "use another folder or the same settings")
        try:
            self.unet.load_state_dict(state["unet"])
            self.ema.load_state_dict(state["ema"])
        except RuntimeError as exc:  # the same settings, but another network (an older layout of the model)
            raise ValueError(f"the checkpoint in {self.out_dir} holds another network than this model's "
                             f"({str(exc).splitlines()[0]}): delete that folder or use another") from exc
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.step = int(state["step"])
        self.losses = list(state["losses"])
        return True

    # -- training ------------------------------------------------------------------------------

    def train_step(self) -> float:
        c, g = self.config, self.gen
        x0, cond, context = self.kind.batch(self.data, self.table, g, c.batch_size)
        cond[torch.rand(c.batch_size, generator=g) < c.caption_dropout] = 0.0
        t = torch.randint(0, self.noise.config.num_train_timesteps, (c.batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = self.noise.add_noise(x0, eps, t)
        for group in self.opt.param_groups:
            group["lr"] = _lr(c, self.step)
        mine = slice(self.rank, None, self.world)
        if context is not None:
            xt = torch.cat([xt, context], 1)
        loss = F.mse_loss(self.unet(xt[mine], t[mine], cond[mine].unsqueeze(1)).sample, eps[mine])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            loss = self._all_reduce_mean(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.unet.parameters()):
                e.lerp_(p, 1 - c.ema_decay)
        self.step += 1
        value = loss.item()
        self.losses.append(value)
        return value

    def _all_reduce_mean(self, loss: torch.Tensor) -> torch.Tensor:
        """Average the gradients and the loss over the processes, in one all-reduce."""
        params = [p for p in self.unet.parameters() if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.reshape(1)])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n
        return flat[-1]

    def run(self, on_step: Callable[[int, float], None] | None = None, stop_at: int | None = None) -> None:
        """Train up to ``config.steps`` (or ``stop_at``, to simulate an interruption), checkpointing."""
        torch.set_num_threads(self.config.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        end = min(self.config.steps, stop_at if stop_at is not None else math.inf)
        self.unet.train()
        while self.step < end:
            loss = self.train_step()
            if on_step is not None:
                on_step(self.step, loss)
            if self.step % self.config.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()

    # -- export --------------------------------------------------------------------------------

    def export(self, folder: Path, extra_card: dict[str, object] | None = None) -> Path:
        """Write the EMA weights as a loadable model folder (unet/, scheduler/, marker, training.json)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.ema.save_pretrained(folder / "unet", safe_serialization=True)
        digit_scheduler().save_pretrained(folder / "scheduler")
        (folder / MARKER_FILE).write_text(json.dumps(
            {"weights": PRETRAINED_WEIGHTS, "builder": self.kind.builder, "version": 1,
             "defaults": self.kind.defaults}, sort_keys=True))
        record = {"config": asdict(self.config), "step": self.step, "data_sha256": self.data.sha256,
                  "final_loss_mean_last_100": sum(self.losses[-100:]) / max(1, len(self.losses[-100:])),
                  "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra_card or {})}
        (folder / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        (folder / "losses.json").write_text(json.dumps([round(v, 5) for v in self.losses]))
        self.kind.export_files(folder)
        return folder


def load_unet(folder: Path) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(Path(folder) / "unet")
