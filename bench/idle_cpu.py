"""What an idle `genloom up` costs, how fast an idle stack picks a job up, and the CPU spent outside
the engine per generated token under load.

Starts `genloom up` (its own GENLOOM_HOME, broker and redis-server; `--only` to narrow the workers),
waits for /readyz and one job end to end (the models loaded and warm), then:

1. idle: samples utime+stime (/proc/<pid>/stat) of every process of the stack over `--seconds`
   and prints each process's and the total CPU in % of one core (own CPU seconds: on a loaded
   machine these move far less than wall-clock figures);
2. pickup: `--jobs` small text jobs, each submitted after `--gap` s of quiet so it meets an idle
   stack; the time from submit to the worker starting the job (the `started` event's own time; p50, p90);
3. load: `--streams` concurrent chats of `--max-tokens` for `--load-seconds`; the CPU seconds of
   everything but the text worker's processes (broker, redis, gateway, streams) per generated token;
4. first token: `--first-token-jobs` chats one at a time, and for each, every process's CPU time
   (/proc/<pid>/task/*/schedstat, nanoseconds, all threads) from submit to the client receiving
   `started`, from there to its first token (what holds the machine while the engine prefills), and
   the whole (submit to first token).

Stops every process by PID and writes ``bench/results/idle_cpu.json``.

    python bench/idle_cpu.py [--seconds 60] [--jobs 20] [--gap 3] [--streams 4] [--load-seconds 30]
                             [--first-token-jobs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.common import cpu_model, cpu_ns  # noqa: E402
from infra.client import GenloomClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "idle_cpu.json"
KEY = "gl-bench-idle"
TICK = os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    argv = [a.decode(errors="replace") for a in argv if a]
    if not argv:
        return f"pid {pid}"
    name = Path(argv[0]).name
    if "-m" in argv:
        i = argv.index("-m")
        rest = [a for a in argv[i + 1:i + 4] if not a.startswith("-")]
        name = " ".join(rest) if rest else name
    elif "multiprocessing" in " ".join(argv):
        name = "mp child of " + label(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]))
    elif len(argv) > 1 and name.startswith("python"):
        name = " ".join(Path(a).name for a in argv[1:3])
    return f"{name} [{pid}]"


#: what `first_token` groups the stack's processes into (by label, first match)
GROUPS = (("engine", "mp child of workers text"), ("text worker", "workers text"), ("gate", "workers moderation"),
          ("other workers", "workers"), ("streams", "streams"), ("broker", "tansu"), ("gateway", "gateway"),
          ("redis", "redis"))


def group(name: str) -> str:
    return next((g for g, part in GROUPS if part in name), "other")


def snapshot(root: int) -> dict[int, tuple[str, float]]:
    out = {}
    for pid in descendants(root):
        secs = cpu_seconds(pid)
        if secs is not None:
            out[pid] = (label(pid), secs)
    return out


def cpu_between(before: dict, after: dict, wall: float) -> list[dict]:
    rows = []
    for pid, (name, secs) in after.items():
        used = secs - before.get(pid, (name, 0.0))[1] if pid in before else secs
        rows.append({"process": name, "cpu_s": round(used, 3), "pct_core": round(100 * used / wall, 2)})
    return sorted(rows, key=lambda r: -r["cpu_s"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat(prompt: str, max_tokens: int) -> dict:
    return {"modality": "text", "params": {"messages": [{"role": "user", "content": prompt}],
                                           "max_tokens": max_tokens}}


async def wait_ready(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the stack was not ready within {timeout} s")


async def run_job(client: GenloomClient, body: dict) -> tuple[float | None, int]:
    """(seconds from submit to the worker's start of the job, tokens generated). The start is the
    `started` event's own time (this machine's clock): the client may receive the event later, together
    with the first token (`GENLOOM_WORKER_STARTED_HOLD_MS`)."""
    t0 = time.time()
    job = await client.submit(body)
    started, tokens = None, 0
    async for event in client.events(job["id"]):
        if event.type == "started" and started is None:
            started = float(event.data["ts"]) - t0
        elif event.type == "token":
            tokens += int(event.data.get("tokens", 0))
    return started, tokens


async def warm_up(base: str) -> None:
    """One job end to end: /readyz does not wait for the workers' models to load and warm up."""
    async with GenloomClient(base, KEY) as client:
        await run_job(client, chat("warm up", 2))


async def pickup(base: str, jobs: int, gap: float) -> list[float]:
    async with GenloomClient(base, KEY) as client:
        out = []
        for i in range(jobs):
            await asyncio.sleep(gap)  # every consumer has gone idle (GENLOOM_KAFKA_BUSY_S)
            started, _ = await run_job(client, chat(f"say {i}", 2))
            if started is not None:
                out.append(started)
        return out


async def load(base: str, streams: int, seconds: float, max_tokens: int) -> int:
    deadline = time.monotonic() + seconds
    tokens = 0

    async def loop(n: int) -> None:
        nonlocal tokens
        async with GenloomClient(base, KEY) as client:
            i = 0
            while time.monotonic() < deadline:
                _, got = await run_job(client, chat(f"Tell me a story {n}.{i}", max_tokens))
                tokens += got
                i += 1

    await asyncio.gather(*(loop(n) for n in range(streams)))
    return tokens


async def first_token(base: str, root: int, jobs: int, gap: float, max_tokens: int = 8) -> dict:
    """`jobs` chats one at a time; per process group, the mean CPU ms from submit to `started` (the
    request's own stages and hops) and from `started` to the first token (the engine's prefill, and what
    else runs meanwhile), and each window's wall-clock p50."""
    pids = [pid for pid in descendants(root) if pid != os.getpid()]
    names = [group(label(pid)) for pid in pids] + ["client"]
    me = os.getpid()

    def read() -> list[int]:
        return [cpu_ns(pid) for pid in pids] + [cpu_ns(me)]

    windows: dict[str, list[float]] = {"stages": [], "prefill": [], "first_token": []}
    cpu: dict[str, dict[str, float]] = {}
    done = 0
    async with GenloomClient(base, KEY) as client:
        for i in range(jobs):
            await asyncio.sleep(gap)
            marks = [(time.perf_counter(), read())]
            job = await client.submit(chat(f"Write a short story about a fox called number {i} who lives in a"
                                           " forest, and give it a twist at the end.", max_tokens))
            async for event in client.events(job["id"]):
                if (event.type == "started" and len(marks) == 1) or (event.type == "token" and len(marks) == 2):
                    marks.append((time.perf_counter(), read()))
            if len(marks) < 3:
                continue
            done += 1
            # with a held `started` (GENLOOM_WORKER_STARTED_HOLD_MS) the client receives it with the first
            # token, and the first window holds the prefill: the whole of both (submit -> first token) is the
            # figure to compare between settings
            for window, (t0, a), (t1, b) in (("stages", marks[0], marks[1]), ("prefill", marks[1], marks[2]),
                                             ("first_token", marks[0], marks[2])):
                windows[window].append((t1 - t0) * 1000)
                for name, x, y in zip(names, a, b):
                    slot = cpu.setdefault(name, {"stages": 0.0, "prefill": 0.0, "first_token": 0.0})
                    slot[window] += (y - x) / 1e6
    return {"jobs": done, "max_tokens": max_tokens,
            "wall_ms_p50": {w: round(statistics.median(v), 1) for w, v in windows.items() if v},
            "cpu_ms_mean": {name: {w: round(v / done, 2) for w, v in slots.items()} for name, slots in cpu.items()}
            if done else {}}


def start_up(home: Path, key: str, env: dict[str, str], only: list[str] | None = None
             ) -> tuple[subprocess.Popen, str]:
    """`genloom up` in a session of its own with its own GENLOOM_HOME, broker and redis-server (any
    GENLOOM_KAFKA_BOOTSTRAP or GENLOOM_REDIS_URL of the caller is dropped); (process, base URL)."""
    port = free_port()
    env = {**os.environ, "GENLOOM_HOME": str(home), "GENLOOM_API_KEYS": f"{key}:bench", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **env}
    for name in ("GENLOOM_KAFKA_BOOTSTRAP", "GENLOOM_REDIS_URL"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "infra.cli.main", "up", "--port", str(port)]
    for m in only or []:
        argv += ["--only", m]
    with open(home / "up.log", "w") as log:
        up = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return up, f"http://127.0.0.1:{port}"


def stop_up(up: subprocess.Popen) -> None:
    """Ctrl-C, as a person stops it (it stops its own processes), then whatever outlived it, by PID."""
    stack = descendants(up.pid)
    up.send_signal(signal.SIGINT)
    try:
        up.wait(30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for pid in stack:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def engine_side(name: str) -> bool:
    return "workers" in name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="idle sampling window")
    ap.add_argument("--settle", type=float, default=10.0, help="wait after ready before sampling")
    ap.add_argument("--jobs", type=int, default=20, help="pickup jobs (0 skips)")
    ap.add_argument("--gap", type=float, default=3.0, help="quiet seconds before each pickup job")
    ap.add_argument("--streams", type=int, default=4, help="concurrent chats of the load part (0 skips)")
    ap.add_argument("--load-seconds", type=float, default=30.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--first-token-jobs", type=int, default=30, help="chats of part 4, one at a time (0 skips)")
    ap.add_argument("--only", action="append", default=None, help="genloom up --only (repeatable)")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    up, base = start_up(Path(tempfile.mkdtemp(prefix="genloom-idle-cpu-")), KEY, {}, args.only)
    result: dict = {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu_model(),
                    "settings": {k: v for k, v in os.environ.items() if k.startswith(("GENLOOM_KAFKA_", "GENLOOM_WORKER_"))},
                    "load_start": os.getloadavg()}
    try:
        asyncio.run(wait_ready(base, args.ready_timeout))
        asyncio.run(warm_up(base))
        time.sleep(args.settle)
        before, t0 = snapshot(up.pid), time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - t0
        rows = cpu_between(before, snapshot(up.pid), wall)
        total = round(sum(r["pct_core"] for r in rows), 2)
        result["idle"] = {"seconds": round(wall, 1), "total_pct_core": total, "processes": rows}
        print(f"idle over {wall:.0f} s, % of one core:")
        for r in rows:
            print(f"  {r['pct_core']:6.2f}  {r['cpu_s']:7.3f} s  {r['process']}")
        print(f"  {total:6.2f}  total")

        if args.jobs:
            lat = asyncio.run(pickup(base, args.jobs, args.gap))
            lat_ms = sorted(x * 1000 for x in lat)
            result["pickup"] = {"jobs": len(lat_ms), "gap_s": args.gap,
                                "p50_ms": round(statistics.median(lat_ms), 1) if lat_ms else None,
                                "p90_ms": round(lat_ms[int(0.9 * (len(lat_ms) - 1))], 1) if lat_ms else None}
            print(f"pickup (submit -> started, idle stack): {result['pickup']}")

        if args.streams:
            before, t0 = snapshot(up.pid), time.monotonic()
            tokens = asyncio.run(load(base, args.streams, args.load_seconds, args.max_tokens))
            wall = time.monotonic() - t0
            rows = cpu_between(before, snapshot(up.pid), wall)
            outside = sum(r["cpu_s"] for r in rows if not engine_side(r["process"]))
            result["load"] = {"streams": args.streams, "seconds": round(wall, 1), "tokens": tokens,
                              "cpu_s_outside_engine": round(outside, 2),
                              "ms_cpu_outside_engine_per_token": round(1000 * outside / tokens, 2) if tokens else None,
                              "processes": rows}
            print(f"load: {tokens} tokens in {wall:.0f} s; CPU outside the engine (broker, redis, gateway,"
                  f" streams): {outside:.2f} s = {result['load']['ms_cpu_outside_engine_per_token']} ms per token")

        if args.first_token_jobs:
            ft = result["first_token"] = asyncio.run(first_token(base, up.pid, args.first_token_jobs, 0.5))
            print(f"first token, {ft['jobs']} jobs one at a time: wall p50 {ft['wall_ms_p50']} ms; mean CPU ms"
                  " per job (submit -> started, started -> first token, submit -> first token):")
            for name, slots in sorted(ft["cpu_ms_mean"].items(), key=lambda kv: -kv[1]["prefill"]):
                print(f"  {name:14s} {slots['stages']:8.2f} {slots['prefill']:8.2f} {slots['first_token']:8.2f}")
    finally:
        stop_up(up)
    result["load_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
