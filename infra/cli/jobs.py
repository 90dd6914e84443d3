"""`genloom submit` and `genloom watch`: jobs through the gateway's API, events as they arrive."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from infra.client import GenloomClient, GenloomError
from infra.settings import StorageSettings

#: where `genloom up` leaves the gateway address and its development key for these commands
CONNECTION_FILE = "connection.json"


def connection_path() -> Path:
    return StorageSettings().home / CONNECTION_FILE


def save_connection(url: str, api_key: str | None) -> None:
    path = connection_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "api_key": api_key}))
    path.chmod(0o600)


def resolve_connection(url: str | None, api_key: str | None) -> tuple[str, str]:
    saved: dict[str, Any] = {}
    if connection_path().exists():
        try:
            saved = json.loads(connection_path().read_text())
        except ValueError:
            saved = {}
    url = url or os.environ.get("GENLOOM_URL") or saved.get("url") or "http://127.0.0.1:8000"
    key = api_key or os.environ.get("GENLOOM_API_KEY") or saved.get("api_key")
    if not key:
        raise typer.BadParameter("no API key: pass --api-key, set GENLOOM_API_KEY, or start `genloom up`,"
                                 " which saves a development key", param_hint="--api-key")
    return url, key


def build_request(modality: str, prompt: str | None, file: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a job from a file or from flags (flags override the file's params)."""
    if file is not None:
        try:
            body = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="--file") from None
        if not isinstance(body, dict):
            raise typer.BadParameter(f"{file} must hold a JSON object", param_hint="--file")
    else:
        body = {"modality": modality, "params": {}}
    params = body.setdefault("params", {})
    modality = body.get("modality", modality)
    if prompt is not None:
        if modality == "text":
            params["messages"] = [{"role": "user", "content": prompt}]
        elif modality == "speech":
            params["input"] = prompt
        else:
            params["prompt"] = prompt
    for name, value in options.items():
        if value is not None:
            if name in ("job_id", "session", "model"):
                body[name] = value
            else:
                params[name] = value
    return body


class EventPrinter:
    """Shows a job's events: tokens inline as they stream, a progress bar for steps."""

    def __init__(self, console: Console, base_url: str | None = None) -> None:
        self._console = console
        self._base_url = base_url
        self._progress: Progress | None = None
        self._task = None
        self._inline = False

    def _end_inline(self) -> None:
        if self._inline:
            self._console.print()
            self._inline = False

    def show(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "token":
            self._console.print(data["text"], end="", markup=False, highlight=False, soft_wrap=True)
            self._inline = True
            return
        if kind == "progress":
            if self._progress is None:
                self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                          TimeElapsedColumn(), console=self._console, transient=False)
                self._progress.start()
                self._task = self._progress.add_task(data.get("stage") or "steps", total=data["total"])
            self._progress.update(self._task, completed=data["step"], total=data["total"])
            return
        self._stop_progress()
        self._end_inline()
        if kind == "accepted":
            self._console.print(f"[dim]accepted {data['job_id']} ({data['modality']})[/dim]")
        elif kind == "started":
            model = data["model"]
            label = " [yellow](random weights)[/yellow]" if model.get("random_weights") else ""
            self._console.print(f"[dim]started on {data['worker']}: {model['id']} {model['device']}"
                                f" {model['dtype']}[/dim]{label}")
        elif kind == "audio":
            self._console.print(f"[dim]audio chunk {data['index']}: {data['duration_s']:.2f}s"
                                f" {data.get('text') or ''}[/dim]")
        elif kind == "artifact":
            uri = data["uri"]
            if self._base_url and "artifacts/" in uri:  # where the owner downloads it from the gateway
                uri = f"{self._base_url.rstrip('/')}/v1/artifacts/{uri[uri.index('artifacts/'):]}"
            self._console.print(f"artifact {data['index']}: {uri} ({data['mime_type']}, {data['bytes']} bytes)")
        elif kind == "prepared":
            redacted = ", ".join(f"{n} {t}" for t, n in sorted(data.get("redactions", {}).items())) or "nothing"
            degraded = f"; degraded: {', '.join(data['degraded'])}" if data.get("degraded") else ""
            self._console.print(f"[dim]prepared by {', '.join(data['stages']) or 'no stage'}: redacted"
                                f" {redacted}{degraded}[/dim]")
        elif kind == "moderation":
            state = "allowed" if data["allowed"] else "[red]blocked[/red]"
            self._console.print(f"moderation: {state} {', '.join(data['categories'])}")
        elif kind == "completed":
            usage = {k: v for k, v in data["usage"].items() if v is not None}
            self._console.print(f"[green]completed[/green] ({data['finish_reason']}) {usage}")
        elif kind == "failed":
            self._console.print(f"[red]failed[/red] {data['code']}: {data['message']}")
        elif kind == "cancelled":
            self._console.print(f"[yellow]cancelled[/yellow] {data.get('reason') or ''}")

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        self._stop_progress()
        self._end_inline()


async def follow(url: str, key: str, job_id: str, console: Console) -> str:
    """Print a job's events until its terminal one; returns the terminal type."""
    printer = EventPrinter(console, url)
    terminal = "unknown"
    async with GenloomClient(url, key) as client:
        try:
            async for event in client.events(job_id):
                printer.show(event.type, event.data)
                if event.terminal:
                    terminal = event.type
        finally:
            printer.close()
    return terminal


async def submit_and_follow(url: str, key: str, body: dict[str, Any], console: Console, wait: bool) -> str:
    async with GenloomClient(url, key) as client:
        job = await client.submit(body)
    job_id = job.get("job_id") or job.get("id")
    console.print(f"job [bold]{job_id}[/bold] {job.get('status', '')}")
    if not wait:
        return "queued"
    return await follow(url, key, job_id, console)


def run_cli(coro) -> str:
    """Run a client coroutine, turning API and connection errors into one clear line."""
    err = Console(stderr=True)
    try:
        return asyncio.run(coro)
    except GenloomError as exc:
        err.print(f"[red]error:[/red] {exc.code}: {exc.message}")
        raise typer.Exit(1)
    except httpx.TransportError as exc:
        err.print(f"[red]error:[/red] cannot reach the gateway ({exc}): is `genloom up` running?")
        raise typer.Exit(1)
