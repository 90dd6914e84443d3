"""Progressive distillation of the digit image model to few sampling steps (Salimans & Ho, 2022),
with classifier-free guidance distilled first (the first stage of Meng et al., 2023).

The teacher samples with DDIM on a grid of 32 steps, t = 31·i, and guidance 2 (two UNet calls a
step, conditional and unconditional). Each round trains a student, initialised from its teacher, to
take in one DDIM step what its teacher takes in two: its grid has half the steps at twice the
spacing, and for a noisy sample on that grid the target is the image that one DDIM step would have
to predict to land where the teacher's two steps land. Before the halving, a first student learns
the teacher's guided prediction from the caption alone (a plain regression on the 32-step grid), so
every later model needs one UNet call a step; three halvings give 4 steps: 50 UNet calls of the
teacher's 25-step sampling become 4.

Seeded like the trainer: one generator draws every batch, caption form, timestep and noise.
The loss is the image error weighted by max(SNR, 1) ("truncated SNR"): the noisiest steps, where an
error in the predicted noise is a large error in the image, are not neglected.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from .data import Digits, load_digits
from .model import TextConditioner, digit_scheduler
from .train import ImageKind

#: the teacher's grid spacing: 32 steps at t = 31 i reach t = 961 of the 1000 training steps
BASE_SPACING = 31
BASE_STEPS = 32
#: file in a model folder that makes it a distilled model (read by DigitsPipeline)
DISTILLED_FILE = "distilled.json"


def grid(steps: int) -> list[int]:
    """The timesteps of a ``steps``-step sampler on the distillation grid, noisiest first. Fewer than
    4 steps would start from pure noise at a timestep that is far from pure noise (496 for 2)."""
    if steps not in (4, 8, 16, BASE_STEPS):
        raise ValueError(f"steps must be 4, 8, 16 or 32; got {steps}")
    spacing = BASE_SPACING * (BASE_STEPS // steps)
    return [spacing * j for j in reversed(range(steps))]


@functools.cache
def _alphas_cumprod() -> torch.Tensor:
    """ᾱ_t of the training schedule (built once, not a scheduler per sampling call)."""
    return digit_scheduler().alphas_cumprod.float()


def _alpha_sigma(ac: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(ᾱ_t) and sqrt(1 - ᾱ_t) per sample, shaped to broadcast over images; t < 0 is the clean
    end of the chain (ᾱ = 1)."""
    a = torch.where(t >= 0, ac[t.clamp(min=0)], torch.ones_like(t, dtype=ac.dtype))
    return a.sqrt().view(-1, 1, 1, 1), (1 - a).sqrt().view(-1, 1, 1, 1)


def ddim_step(z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, s: torch.Tensor, ac: torch.Tensor,
              clip: bool = True) -> torch.Tensor:
    """One deterministic DDIM step from t to s (per sample; s < 0: to the clean image), the predicted
    image clipped to [-1, 1] and the predicted noise kept as it is, as the served DDIM scheduler does
    (`clip_sample`, without `use_clipped_model_output`)."""
    a_t, s_t = _alpha_sigma(ac, t)
    a_s, s_s = _alpha_sigma(ac, s)
    x = (z - s_t * eps) / a_t
    if clip:
        x = x.clamp(-1, 1)
    return a_s * x + s_s * eps


@torch.no_grad()
def sample_on_grid(unet: UNet2DConditionModel, tokens: torch.Tensor, noise: torch.Tensor, timesteps: list[int],
                   guidance: float | None = None, on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """DDIM on ``timesteps`` from ``noise``: conditional only (a distilled student), or with
    classifier-free guidance when ``guidance`` is given (tokens then hold the unconditional half first)."""
    ac = _alphas_cumprod().to(noise.dtype)
    x = noise
    for i, t in enumerate(timesteps):
        s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        eps = _eps(unet, x, torch.full((len(x),), t), tokens, guidance)
        x = ddim_step(x, eps, torch.full((len(x),), t), torch.full((len(x),), s), ac)
        if on_step is not None:
            on_step(i, t)
    return x


def _eps(unet: UNet2DConditionModel, z: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
         guidance: float | None) -> torch.Tensor:
    if guidance is None:
        return unet(z, t, tokens).sample
    eps_u, eps_c = unet(torch.cat([z, z]), torch.cat([t, t]), tokens).sample.chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


@dataclass(frozen=True)
class DistillConfig:
    target_steps: int = 4  #: halved from 32 until this: 3 rounds for 4
    steps_per_round: int = 600
    batch_size: int = 64
    lr: float = 1e-4
    guidance: float = 2.0  #: the teacher's guidance, baked into the first student
    seed: int = 0
    threads: int = 2


class Distiller:
    """Rounds of progressive distillation from ``teacher`` (an image UNet sampled with guidance)."""

    def __init__(self, teacher: UNet2DConditionModel, config: DistillConfig, text: TextConditioner,
                 data: Digits | None = None) -> None:
        if config.target_steps not in (4, 8, 16):
            raise ValueError(f"target_steps must be 16, 8 or 4; got {config.target_steps}")
        self.config = config
        self.data = data or load_digits("train")
        self.table = ImageKind.table(text)
        self.teacher = teacher.eval().requires_grad_(False)
        self.ac = _alphas_cumprod()
        self.gen = torch.Generator().manual_seed(config.seed)
        self.rounds: list[dict] = []  #: per round: steps, losses
        self.guided: UNet2DConditionModel | None = None  #: round 0's student (guidance built in, 32-step grid)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x0, cond, _ = ImageKind.batch(self.data, self.table, self.gen, self.config.batch_size)
        return x0, cond.unsqueeze(1)

    def _target(self, teacher: UNet2DConditionModel, guided: bool, z: torch.Tensor, t: torch.Tensor,
                spacing: int, cond: torch.Tensor) -> torch.Tensor:
        """The image a one-step student must predict at (z, t) to land where two teacher steps of
        ``spacing`` land (one step, to the clean image, from the grid's last point)."""
        tokens = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
        guidance = self.config.guidance if guided else None
        mid = t - spacing
        z1 = ddim_step(z, _eps(teacher, z, t, tokens, guidance), t, mid, self.ac)
        last = mid < 0
        end = torch.where(last, mid, t - 2 * spacing)
        z2 = ddim_step(z1, _eps(teacher, z1, mid.clamp(min=0), tokens, guidance), mid.clamp(min=0), end, self.ac)
        z2 = torch.where(last.view(-1, 1, 1, 1), z1, z2)
        a_t, s_t = _alpha_sigma(self.ac, t)
        a_s, s_s = _alpha_sigma(self.ac, end)
        ratio = s_s / s_t
        # near pure noise the division amplifies the teacher's every wobble far outside the pixel range;
        # the teacher's own steps clip their predicted image to [-1, 1], and so does the target
        return ((z2 - ratio * z) / (a_s - ratio * a_t)).clamp(-1, 1)

    def _fit(self, teacher: UNet2DConditionModel, points: int, spacing: int, loss_of: Callable[..., torch.Tensor],
             record: dict, on_step: Callable[[int, float], None] | None) -> UNet2DConditionModel:
        """Train a copy of ``teacher`` on noisy samples at t = spacing * j (j < points) for a round,
        minimising ``loss_of(student, z, t, a_t, s_t, cond)``; the round's losses go to `rounds`."""
        c = self.config
        student = copy.deepcopy(teacher).train().requires_grad_(True)
        opt = torch.optim.AdamW(student.parameters(), lr=c.lr, weight_decay=0.0)
        losses: list[float] = []
        for i in range(c.steps_per_round):
            x0, cond = self._batch()
            t = spacing * torch.randint(0, points, (c.batch_size,), generator=self.gen)
            noise = torch.randn(x0.shape, generator=self.gen)
            a_t, s_t = _alpha_sigma(self.ac, t)
            z = a_t * x0 + s_t * noise
            loss = loss_of(student, z, t, a_t, s_t, cond)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(i + 1, losses[-1])
        self.rounds.append({**record, "losses": [round(v, 5) for v in losses]})
        return student.eval().requires_grad_(False)

    def run_round(self, teacher: UNet2DConditionModel, guided: bool, steps: int,
                  on_step: Callable[[int, float], None] | None = None) -> UNet2DConditionModel:
        """Train a ``steps``-step student of ``teacher`` (which samples in 2 x steps)."""
        spacing = BASE_SPACING * (BASE_STEPS // (2 * steps))  # the teacher's

        def loss_of(student, z, t, a_t, s_t, cond):
            with torch.no_grad():
                target = self._target(teacher, guided, z, t, spacing, cond)
            x_hat = (z - s_t * student(z, t, cond).sample) / a_t
            return ((a_t / s_t) ** 2).clamp(min=1.0).mul((x_hat - target) ** 2).mean()  # max(SNR, 1) weighting

        return self._fit(teacher, steps, 2 * spacing, loss_of, {"steps": steps}, on_step)

    def distil_guidance(self, on_step: Callable[[int, float], None] | None = None) -> UNet2DConditionModel:
        """Round 0: a student that predicts, from the caption alone, the teacher's guided noise
        prediction (eps_u + w (eps_c - eps_u)) at every point of the teacher's 32-step grid: a plain
        regression, so that the halving rounds after it start from a model sampled with one call a step."""

        def loss_of(student, z, t, _a_t, _s_t, cond):
            with torch.no_grad():
                target = _eps(self.teacher, z, t, torch.cat([torch.zeros_like(cond), cond]), self.config.guidance)
            return F.mse_loss(student(z, t, cond).sample, target)

        return self._fit(self.teacher, BASE_STEPS, BASE_SPACING, loss_of, {"steps": BASE_STEPS, "guidance": True},
                         on_step)

    def run(self, on_round: Callable[[int], None] | None = None,
            on_step: Callable[[int, float], None] | None = None) -> UNet2DConditionModel:
        """Guidance distilled (round 0, 32 steps), then halving rounds to `target_steps`."""
        torch.set_num_threads(self.config.threads)
        if on_round is not None:
            on_round(BASE_STEPS)
        self.guided = teacher = self.distil_guidance(on_step)
        steps = BASE_STEPS // 2
        while True:
            if on_round is not None:
                on_round(steps)
            teacher = self.run_round(teacher, False, steps, on_step)
            if steps <= self.config.target_steps:
                return teacher
            steps //= 2


def export_distilled(student: UNet2DConditionModel, teacher_folder: Path, folder: Path,
                     distiller: Distiller, metrics: dict | None = None, exported: str = "student") -> Path:
    """A model folder like the teacher's (same scheduler and marker, defaults of the distilled
    sampler) with ``student``'s weights and `distilled.json` (grid, config, losses, metrics, and
    which model was exported: the last halving's "student", or "guidance distilled only", round 0's
    model, which samples on the same grid with one call a step)."""
    from infra.models.storage import MARKER_FILE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(folder / "unet", safe_serialization=True)
    digit_scheduler().save_pretrained(folder / "scheduler")
    marker = json.loads((Path(teacher_folder) / MARKER_FILE).read_text())
    steps = distiller.config.target_steps
    marker["defaults"] = {**marker.get("defaults", {}), "steps": steps, "guidance": distiller.config.guidance}
    (folder / MARKER_FILE).write_text(json.dumps(marker, sort_keys=True))
    record = {"method": "guidance distillation, then progressive distillation (halving rounds)",
              "teacher": str(teacher_folder), "steps": steps, "timesteps": grid(steps),
              "guidance_baked": distiller.config.guidance, "config": asdict(distiller.config),
              "data_sha256": distiller.data.sha256, "rounds": distiller.rounds, "metrics": metrics or {},
              "exported": exported,
              "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (folder / DISTILLED_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
    return folder


def compare(teacher_folder: Path, student: UNet2DConditionModel, text: TextConditioner, steps: int, *,
            guided: UNet2DConditionModel | None = None, per_caption: int = 1,
            note: Callable[[str], None] = lambda _: None) -> dict:
    """Conditional accuracy and images/s, on every caption form (seen and held out), of: the teacher
    as served (DDIM, 25 steps, guidance 2), the teacher with DDIM at the student's step count (the
    baseline distillation must beat), the guidance-distilled model (round 0) with DDIM at that step
    count, and the student."""
    from .classifier import DigitClassifier
    from .evaluate import evaluate_image
    from .pipeline import DigitsPipeline

    judge = DigitClassifier.train()
    pipe = DigitsPipeline.from_folder(teacher_folder, text)
    rows = {}
    for name, kwargs in (("teacher, DDIM 25 steps, guidance 2", {"steps": 25}),
                         (f"teacher, DDIM {steps} steps, guidance 2", {"steps": steps})):
        result = evaluate_image(pipe, judge, per_caption=per_caption, **kwargs)
        rows[name] = asdict(result)
        note(f"{name}: accuracy {result.accuracy:.3f}, {result.images_per_s:.1f} images/s")
    pipe.distilled = {"steps": steps, "timesteps": grid(steps)}  # one conditional call a step, on the grid
    if guided is not None:
        pipe.unet = guided
        result = evaluate_image(pipe, judge, per_caption=per_caption, steps=steps)
        rows[f"guidance distilled only, DDIM {steps} steps"] = asdict(result)
        note(f"guidance distilled, {steps} steps: accuracy {result.accuracy:.3f}, {result.images_per_s:.1f} images/s")
    pipe.unet = student
    result = evaluate_image(pipe, judge, per_caption=per_caption, steps=steps)
    rows[f"student, {steps} steps (distilled)"] = asdict(result)
    note(f"student, {steps} steps: accuracy {result.accuracy:.3f}, {result.images_per_s:.1f} images/s")
    return rows
