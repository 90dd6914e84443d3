"""What the fan-out's apply script costs Redis per event, beside the same script at another revision, in one run.

Every event on `genloom.events` reaches its job's record, dedupe hash and replay log through one Lua function
(`_APPLY_ONE` in infra/redis/jobstore.py), called for a slice of a poll's events at a time. Redis runs a
script alone, so its time per event is time every other client of that Redis waits, on the path of every
token to its streams. This bench applies bursts of token events (one per job, as one decode step of a batch
holding `--jobs` streams emits them) in slices of `--slice` (the fan-out's `GENLOOM_FANOUT_APPLY_CHUNK`),
with this checkout's `JobStore` and with the `JobStore` of `--against` (a git revision: its jobstore.py read
with `git show`, over this checkout's other modules), the two alternating call by call on one redis-server.
Each call's time in Redis comes from SLOWLOG (what Redis itself spent running it, without the round
trip); the figure is the median call's over its events. `INFO commandstats` gives the Redis commands each
side runs per event. Both sides must leave the same replay logs and records, or the bench stops.

    python bench/apply_cost.py [--against 00b3a0b] [--bursts 200] [--jobs 96] [--slice 32]

Writes ``bench/results/apply_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from infra.kafka.emitter import EventEmitter  # noqa: E402
from infra.redis import jobstore as current  # noqa: E402
from infra.redis import keys  # noqa: E402
from infra.redis.client import connect  # noqa: E402
from infra.redis.server import LocalRedis  # noqa: E402
from schemas.enums import EventSource  # noqa: E402
from schemas.events import Completed, ModelInfo, Started, TokenDelta  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "apply_cost.json"
#: the commit before the apply script stopped pushing the expiry back with every token
DEFAULT_AGAINST = "00b3a0b"
MODEL = ModelInfo(id="smollm2-135m-instruct", device="cpu", dtype="bfloat16")


def jobstore_at(rev: str):
    """infra/redis/jobstore.py as it was at `rev`, imported beside this checkout's (its relative imports
    resolve to this checkout's package)."""
    source = subprocess.run(["git", "show", f"{rev}:infra/redis/jobstore.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    name = "infra.redis._jobstore_at_" + re.sub(r"\W", "_", rev)
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "infra.redis"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:infra/redis/jobstore.py", "exec"), module.__dict__)
    return module


def _events(emitter: EventEmitter, jobs: list[str], kind=TokenDelta, **fields) -> list[tuple]:
    """The next event of `kind` of each job, with its payload (a token each by default: one burst)."""
    events = [emitter.build(kind, job, **(fields or {"text": "x", "tokens": 1})) for job in jobs]
    return [(e, e.model_dump_json().encode()) for e in events]


async def _apply(store, items: list[tuple], size: int) -> None:
    for first in range(0, len(items), size):
        for outcome in await store.apply_batch(items[first:first + size], time.time()):
            if isinstance(outcome, Exception):
                raise outcome


async def _left(redis, store, job: str) -> tuple:
    """What a side left for one job: its replay log (types, numbers) and its record's lifecycle fields."""
    record = await store.load(job)
    return ([(e.id, e.type) for e in await store.entries(job)],
            (record.status, record.last_event_id, record.terminal_id, record.text),
            await redis.ttl(keys.replay_log(job)) > 0)


async def run(url: str, against: str, bursts: int, jobs: int, size: int) -> dict:
    redis = connect(url)
    baseline = jobstore_at(against)
    sides = {"genloom": current.JobStore(redis), "baseline": baseline.JobStore(redis)}
    sha = {hashlib.sha1(current._APPLY.encode()).hexdigest(): "genloom",
           hashlib.sha1(baseline._APPLY.encode()).hexdigest(): "baseline"}
    if len(sha) != 2:
        raise SystemExit(f"{against}'s apply script is this checkout's: nothing to compare")
    emitter = EventEmitter(None, "genloom.events", EventSource.WORKER)
    names = {side: [f"t:{side}-{uuid.uuid4().hex[:8]}-{i}" for i in range(jobs)] for side in sides}
    for side, store in sides.items():  # each job started, as a running job's tokens find it
        await _apply(store, _events(emitter, names[side], Started, worker="w", model=MODEL), size)
    # Redis 7 logs the commands a script runs too (about 7 an event): the log is read and emptied after each
    # pair of bursts, and holds a pair's entries
    await redis.config_set("slowlog-max-len", 20 * jobs + 100)
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.slowlog_reset()
    per_call: dict[str, list[float]] = {side: [] for side in sides}
    for b in range(bursts):
        for side in (("genloom", "baseline") if b % 2 else ("baseline", "genloom")):
            await _apply(sides[side], _events(emitter, names[side]), size)
        for entry in await redis.slowlog_get(-1):
            words = entry["command"].split()
            if len(words) > 1 and words[0].upper() == b"EVALSHA" and words[1].decode() in sha:
                per_call[sha[words[1].decode()]].append(entry["duration"])
        await redis.slowlog_reset()
    await redis.config_set("slowlog-log-slower-than", 10000)
    if any(len(durations) != bursts * (jobs // size) for durations in per_call.values()):
        raise SystemExit(f"SLOWLOG lost calls: {({s: len(d) for s, d in per_call.items()})}")
    commands = {}
    for side, store in sides.items():  # the Redis commands a token costs inside each side's script
        await redis.config_resetstat()
        for _ in range(10):
            await _apply(store, _events(emitter, names[side]), size)
        stats = await redis.info("commandstats")
        commands[side] = {name.removeprefix("cmdstat_"): round(v["calls"] / (10 * jobs), 2)
                          for name, v in stats.items() if name.startswith("cmdstat_")
                          and name not in ("cmdstat_evalsha", "cmdstat_config|resetstat")}
    for side, store in sides.items():  # the end of each job: both must leave the same state behind
        await _apply(store, _events(emitter, names[side], Completed, text="done"), size)
    left = {side: await _left(redis, store, names[side][0]) for side, store in sides.items()}
    if left["genloom"] != left["baseline"]:
        raise SystemExit(f"the two sides left different replay logs or records: {left}")
    await redis.aclose()
    out = {}
    for side, durations in per_call.items():
        per_event = sorted(d / size for d in durations)
        out[side] = {"calls": len(durations), "us_per_event_p50": round(statistics.median(per_event), 2),
                     "us_per_event_p25": round(per_event[len(per_event) // 4], 2),
                     "us_per_event_p75": round(per_event[3 * len(per_event) // 4], 2),
                     "commands_per_event": commands[side],
                     "commands_per_event_total": round(sum(commands[side].values()), 2)}
    return {"costs": out, "events_per_side": bursts * jobs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default=DEFAULT_AGAINST, help="the git revision whose apply script is the baseline")
    parser.add_argument("--bursts", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=96, help="jobs per burst: one token event each")
    parser.add_argument("--slice", type=int, default=32, help="events per script call (GENLOOM_FANOUT_APPLY_CHUNK)")
    args = parser.parse_args()
    if args.jobs % args.slice:
        parser.error("--jobs must be a multiple of --slice (every call then holds --slice events)")
    with LocalRedis() as redis:
        measured = asyncio.run(run(redis.url, args.against, args.bursts, args.jobs, args.slice))
    results = {**machine(), "against": args.against, "bursts": args.bursts, "jobs": args.jobs, "slice": args.slice,
               **measured}
    ours, theirs = (measured["costs"][s]["us_per_event_p50"] for s in ("genloom", "baseline"))
    counts = [measured["costs"][s]["commands_per_event_total"] for s in ("genloom", "baseline")]
    print(f"the apply script in Redis per token event: genloom {ours:.2f} us ({counts[0]} commands), {args.against}"
          f" {theirs:.2f} us ({counts[1]}): {ours / theirs:.2f}x")
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
