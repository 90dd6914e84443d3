"""`genloom`: run the local stack, inspect topics, submit and watch jobs."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from infra.cli.evaluate import evaluate
from infra.cli.jobs import build_request, follow, resolve_connection, run_cli, save_connection, submit_and_follow
from infra.cli.prepare import prepare
from infra.cli.train import train_app
from infra.docs import write
from infra.kafka.admin import topic_report
from infra.kafka.clients import TopicMismatch, ensure_topics
from infra.kafka.topics import catalogue
from infra.models.catalog import available
from infra.settings import KafkaSettings, RedisSettings, StorageSettings, TopicSettings
from infra.stack import Stack
from schemas.enums import Modality

app = typer.Typer(help="genloom: generative AI behind a durable event log.", no_args_is_help=True,
                  add_completion=False)
app.add_typer(train_app, name="train")
app.command("eval")(evaluate)
console = Console()
err = Console(stderr=True)

#: restarts of one crashed component before `up` stops relaunching it
MAX_RESTARTS = 5


@app.command()
def up(
    port: int = typer.Option(8000, help="Gateway port on 127.0.0.1."),
    only: list[str] = typer.Option(
        None, help="Run only these modalities' workers (text, speech, image, video)."
    ),
    exit_after: float = typer.Option(0, hidden=True, help="Stop after N seconds (smoke tests)."),
) -> None:
    """Start the broker and Redis (unless configured), create topics, and run every process."""
    kafka, redis, storage, topics = KafkaSettings(), RedisSettings(), StorageSettings(), TopicSettings()
    env: dict[str, str] = {}
    if not os.environ.get("GENLOOM_API_KEYS") and not os.environ.get("GENLOOM_API_KEYS_FILE"):
        dev_key = "gl-dev-" + secrets.token_urlsafe(18)
        env["GENLOOM_API_KEYS"] = f"{dev_key}:dev"
    else:
        dev_key = None
    if not os.environ.get("GENLOOM_REQUEST_SIGNING_KEY"):  # the gateway signs; streams and workers verify
        env["GENLOOM_REQUEST_SIGNING_KEY"] = secrets.token_urlsafe(32)
    if not os.environ.get("GENLOOM_PRIVACY_KEY"):  # streams encrypts placeholder mappings; the gateway decrypts
        env["GENLOOM_PRIVACY_KEY"] = secrets.token_urlsafe(32)
    stack = Stack(bootstrap=kafka.bootstrap, redis_url=redis.url, log_dir=storage.home / "logs",
                  env=env, partitions=topics.partitions, job_partitions=topics.job_partitions,
                  recycle_batches=kafka.bundled_recycle_batches,
                  recycle_force_batches=kafka.bundled_recycle_force_batches,
                  fill_check_s=kafka.bundled_fill_check_s)
    try:
        with console.status("starting the event log and Redis..."):
            stack.start_backends()
    except Exception as exc:  # a clear line, not a traceback
        err.print(f"[red]error:[/red] {exc}")
        stack.stop()
        raise typer.Exit(1)

    missing = stack.add_core()
    wanted = {Modality(m) for m in only} if only else set(Modality)
    status = available()
    for modality, reason in status.items():
        if modality not in wanted:
            continue
        if reason is None:
            stack.add(f"worker-{modality.value}", ["workers", modality.value])
        else:
            missing[f"worker-{modality.value}"] = reason
    try:
        prepare([m for m in wanted if status[m] is None], storage.cache_dir, console)
    except Exception as exc:
        err.print(f"[red]error:[/red] preparing models failed: {exc}")
        stack.stop()
        raise typer.Exit(1)
    stack.add("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(port)], port=port)

    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with console.status("starting processes (the first start builds model caches)..."):
            stack.start()
        _show(stack, missing, dev_key, port)
        save_connection(f"http://127.0.0.1:{port}", dev_key or os.environ.get("GENLOOM_API_KEY"))
        started = time.monotonic()
        while not stopping:
            time.sleep(0.5)
            try:
                for line in stack.revive_backends() + stack.recycle_full_broker():
                    err.print(f"[yellow]{line}[/yellow]")
            except Exception as exc:  # tried again next round; the components reconnect meanwhile
                err.print(f"[red]restarting a backend failed:[/red] {exc}")
            for component in stack.dead():
                log = stack.log_dir / (component.name + ".log")
                if component.restarts >= MAX_RESTARTS:
                    if component.proc is not None:
                        err.print(f"[red]{component.name} keeps exiting ({component.proc.returncode});"
                                  f" giving up on it: see {log}[/red]")
                        component.proc = None
                    continue
                err.print(f"[yellow]{component.name} exited with {component.proc.returncode};"
                          f" restarting (log: {log})[/yellow]")
                moved = stack.relaunch(component)
                if moved:
                    err.print(f"[yellow]{moved}[/yellow]")
            if exit_after and time.monotonic() - started > exit_after:
                break
    except Exception as exc:
        err.print(f"[red]error:[/red] {exc}. Logs are in {stack.log_dir}")
        stack.stop()
        raise typer.Exit(1)
    console.print("stopping...")
    stack.stop()
    console.print("[green]stopped; nothing left running[/green]")


def _show(stack, missing: dict[str, str], dev_key: str | None, port: int) -> None:
    table = Table(title="genloom is up")
    table.add_column("part")
    table.add_column("state")
    table.add_column("where")
    table.add_row("kafka", "[green]up[/green]", stack.bootstrap + (" (bundled broker)" if stack.broker else ""))
    table.add_row("redis", "[green]up[/green]", stack.redis_url + (" (local)" if stack.redis else ""))
    for component in stack.components:
        where = f"pid {component.proc.pid}" + (f", 127.0.0.1:{component.port}" if component.port else "")
        metrics = component.metrics_port or component.port
        where += f", metrics http://127.0.0.1:{metrics}/metrics" if metrics else ""
        # a port that answers is up; a worker is started and joins its consumer group when loaded
        state = "[green]up[/green]" if component.port else "[green]started[/green]"
        table.add_row(component.name, state, where)
    for name, reason in missing.items():
        state = "[dim]off[/dim]" if reason.startswith("off") else "[yellow]missing[/yellow]"
        table.add_row(name, state, reason)
    console.print(table)
    if dev_key:
        console.print(f"development API key (tenant 'dev'): [bold]{dev_key}[/bold]")
    console.print(f"logs: {stack.log_dir}    stop with Ctrl-C")


@app.command()
def topics(bootstrap: str = typer.Option(None, help="Kafka host:port (default GENLOOM_KAFKA_BOOTSTRAP)."),
           create: bool = typer.Option(False, "--create", help="Create missing topics first (GENLOOM_TOPICS_*"
                                       " partition counts), as a deployment's init step does.")) -> None:
    """List the topic catalogue with partition counts and consumer lag."""
    bootstrap = bootstrap or KafkaSettings().bootstrap
    if not bootstrap:
        err.print("[red]error:[/red] no broker: pass --bootstrap or set GENLOOM_KAFKA_BOOTSTRAP "
                  "(`genloom up` prints it)")
        raise typer.Exit(2)
    try:
        if create:
            wanted = TopicSettings()
            made = asyncio.run(ensure_topics(bootstrap, catalogue(wanted.partitions, wanted.job_partitions),
                                             replication=wanted.replication))
            console.print(f"created {len(made)} topic(s): {', '.join(made) or 'none missing'}")
        rows = asyncio.run(topic_report(bootstrap, TopicSettings()))
    except (ConnectionError, TopicMismatch) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1)
    table = Table(title=f"topics on {bootstrap}")
    for col in ("topic", "partitions", "expected", "consumer group", "lag", "purpose"):
        table.add_column(col)
    for row in rows:
        table.add_row(row.name, str(row.partitions if row.partitions is not None else "missing"),
                      str(row.expected), row.group or "", "" if row.lag is None else str(row.lag),
                      row.purpose)
    console.print(table)


@app.command()
def submit(
    prompt: str = typer.Argument(None, help="The prompt (text: the user message; speech: the text to speak)."),
    modality: str = typer.Option("text", "--modality", "-m", help="text, speech, image or video."),
    file: Path = typer.Option(None, "--file", "-f", help="A GenerationRequest JSON file."),
    max_tokens: int = typer.Option(None, help="text: most tokens to generate."),
    temperature: float = typer.Option(None, help="text: sampling temperature (0 = greedy)."),
    steps: int = typer.Option(None, help="image/video: denoising steps."),
    width: int = typer.Option(None, help="image/video: width in pixels."),
    height: int = typer.Option(None, help="image/video: height in pixels."),
    frames: int = typer.Option(None, help="video: number of frames."),
    voice: str = typer.Option(None, help="speech: voice name."),
    seed: int = typer.Option(None, help="Seed for reproducible output."),
    job_id: str = typer.Option(None, help="Idempotency key; resubmitting it never runs the job twice."),
    wait: bool = typer.Option(True, help="Follow the job's events until it ends."),
    url: str = typer.Option(None, help="Gateway URL (default: the one `genloom up` started)."),
    api_key: str = typer.Option(None, help="API key (default: GENLOOM_API_KEY or the development key)."),
) -> None:
    """Submit a job and print its events as they arrive: tokens as they stream, a progress bar for steps."""
    if prompt is None and file is None:
        raise typer.BadParameter("give a prompt or --file", param_hint="PROMPT")
    url, key = resolve_connection(url, api_key)
    body = build_request(modality, prompt, file, {
        "max_tokens": max_tokens, "temperature": temperature, "steps": steps, "width": width,
        "height": height, "frames": frames, "voice": voice, "seed": seed, "job_id": job_id})
    terminal = run_cli(submit_and_follow(url, key, body, console, wait))
    raise typer.Exit(0 if terminal in ("completed", "queued") else 1)


@app.command()
def watch(
    job_id: str = typer.Argument(..., help="The job to follow."),
    url: str = typer.Option(None, help="Gateway URL."),
    api_key: str = typer.Option(None, help="API key."),
) -> None:
    """Follow a job's events from the start (reconnecting with Last-Event-ID if the connection drops)."""
    url, key = resolve_connection(url, api_key)
    terminal = run_cli(follow(url, key, job_id, console))
    raise typer.Exit(0 if terminal == "completed" else 1)


@app.command()
def schema(docs_dir: Path = typer.Option(Path("docs"), help="Where to write the published contract.")) -> None:
    """Regenerate the JSON Schemas and the AsyncAPI document from schemas/."""
    written = write(docs_dir)
    console.print(f"wrote {len(written)} file(s)" if written else "schemas are up to date")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
