"""What moderation costs a token stream: the time the output gate adds to the first token and to
each token, against the same stream ungated, in one run.

Three bundled brokers, each with a gate in this process: a pass-through gate (what runs with
moderation off: the same hop, no check), the default gate (categories classifier, window_mode
checked: each token released once its sentence so far passes, held only while it could grow into
a blocked term) and the windowed gate (windows at sentence ends, 16 tokens or 160 characters, the
first window one token). A paced worker plays the same streams into all three at once (a chat answer of about 60 tokens, TPOT as measured for SmolLM2 in
bench/results/text_platform.json), and a consumer on each `genloom.events` times every token from
its send to its release. The prompt stage's cost (one check per prompt, added to time to first
token before any worker starts) is timed on the same machine.

Quality on the token-stream path (no broker): every labelled text of bench/data/moderation_texts.tsv
is streamed word piece by word piece through a gate of each mode; a harmful text should be cut
(its stream ended with content_filter), a clean one fully released. Reported per mode, with how
much of a cut harmful text was released before the cut and the gate's own time per token.

    .venv/bin/python bench/moderation_latency.py [--jobs 8] [--rounds 3] [--tpot-ms 75]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_s, pct  # noqa: E402
from infra.kafka import clients  # noqa: E402
from infra.kafka.broker import LocalBroker  # noqa: E402
from infra.kafka.clients import ensure_topics  # noqa: E402
from infra.kafka.consume import COMMIT_GAP_S  # noqa: E402
from infra.kafka.codec import decode_event, encode  # noqa: E402
from infra.kafka.emitter import EventEmitter  # noqa: E402
from infra.kafka.topics import EVENTS, EVENTS_RAW, catalogue  # noqa: E402
from infra.moderation.moderator import build_moderator  # noqa: E402
from infra.settings.moderation import ModerationSettings  # noqa: E402
from schemas.enums import EventSource  # noqa: E402
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage  # noqa: E402
from workers.moderation.build import build_gate  # noqa: E402
from workers.moderation.gate import ModerationGate  # noqa: E402
from workers.wiring import gate_runner  # noqa: E402

OUT = ROOT / "bench" / "results" / "moderation_latency.json"
ANSWER = ("Paris is the capital of France. It sits on the Seine, in the north of the country, and is home to about"
          " two million people. The city is known for its museums, such as the Louvre, and for landmarks like the"
          " Eiffel Tower. Many visitors come in spring, when the parks are in bloom. Would you like some tips for"
          " a first visit?")
MODEL = ModelInfo(id="bench", device="cpu", dtype="float32")
FAST = dict(fetch_max_wait_ms=10, session_timeout_ms=2000, heartbeat_interval_ms=500)


def tokens(text: str) -> list[str]:
    """Word pieces with their leading space, as a BPE detokenizer streams them."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


class Side:
    """One broker, its gate, and a reader timing releases."""

    def __init__(self, name: str, gate: ModerationGate, commit_gap_s: float = COMMIT_GAP_S) -> None:
        self.name = name
        self.gate = gate
        self.commit_gap_s = commit_gap_s
        self.broker = LocalBroker()
        self.sent: dict[tuple[str, int], float] = {}
        self.released: dict[tuple[str, int], float] = {}

    async def start(self) -> None:
        self.broker.start()
        await ensure_topics(self.broker.bootstrap, catalogue(2, 2))
        self.producer = clients.producer(self.broker.bootstrap)
        await clients.start_client(self.producer, self.broker.bootstrap)
        self.runner = gate_runner(self.gate, bootstrap=self.broker.bootstrap, group=f"bench-{self.name}",
                                  commit_gap_s=self.commit_gap_s, **FAST)
        await self.runner.start()
        self.run_task = asyncio.create_task(self.runner.run())
        self.reader = clients.consumer(self.broker.bootstrap, EVENTS, group_id=None, auto_offset_reset="earliest",
                                       fetch_max_wait_ms=10)
        await clients.start_client(self.reader, self.broker.bootstrap)
        self.read_task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.reader.getmany(timeout_ms=50)
            now = time.perf_counter()
            for messages in batches.values():
                for m in messages:
                    event = decode_event(m.value)
                    if isinstance(event, TokenDelta):
                        self.released[(event.job_id, event.seq)] = now

    async def emit(self, event) -> None:
        if isinstance(event, TokenDelta):
            self.sent[(event.job_id, event.seq)] = time.perf_counter()
        await self.producer.send(EVENTS_RAW, encode(event), key=event.job_id.encode())

    async def stop(self) -> None:
        """Whatever of it was started (the broker process above all)."""
        try:
            for task in (getattr(self, "read_task", None), getattr(self, "run_task", None)):
                if task is not None:
                    task.cancel()
            for client in (getattr(self, "reader", None), getattr(self, "runner", None),
                           getattr(self, "producer", None)):
                if client is not None:
                    await client.stop()
        finally:
            self.broker.stop()


async def stream(sides: list[Side], job: str, pieces: list[str], tpot_s: float) -> None:
    """One job played into every side at the same moments."""
    emitter = EventEmitter(None, EVENTS_RAW, EventSource.WORKER)
    started = emitter.build(Started, job, 1, worker="bench", model=MODEL)
    for side in sides:
        await side.emit(started)
    for piece in pieces:
        event = emitter.build(TokenDelta, job, 1, text=piece, tokens=1)
        for side in sides:
            await side.emit(event)
        await asyncio.sleep(tpot_s)
    done = emitter.build(Completed, job, 1, usage=Usage(completion_tokens=len(pieces)), text="".join(pieces))
    for side in sides:
        await side.emit(done)


#: the gated modes measured against the ungated stream: name -> settings
MODES = {"checked": ModerationSettings(window_mode="checked"), "windowed": ModerationSettings(window_mode="windowed")}


#: an extra side: the ungated gate committing each batch before its next poll, as every gate did before
#: GENLOOM_MODERATION_COMMIT_GAP_MS (commits off the loop's path, at most once a second)
COMMIT_EACH = "ungated, a commit per batch"


async def measure(args) -> dict:
    sides = [Side("ungated", ModerationGate(None)), Side(COMMIT_EACH, ModerationGate(None), commit_gap_s=0)]
    sides += [Side(name, build_gate(s)) for name, s in MODES.items()]
    broker_cpu: dict[str, float] = {}
    try:
        for side in sides:
            await side.start()
        await asyncio.sleep(4)  # both groups joined
        pieces = tokens(ANSWER)
        jobs = []
        broker_cpu = {side.name: cpu_s(side.broker.pid) for side in sides}
        for r in range(args.rounds):
            batch = [f"bench-{r}-{i}" for i in range(args.jobs)]
            jobs += batch
            await asyncio.gather(*(stream(sides, job, pieces, args.tpot_ms / 1000) for job in batch))
        await asyncio.sleep(3)  # the last windows released
        broker_cpu = {side.name: cpu_s(side.broker.pid) - broker_cpu[side.name] for side in sides}
    finally:
        for side in sides:
            await side.stop()
    out = {}
    for side in sides:
        # seq 0 is the job's `started`; its first token is seq 1
        first = [side.released[(j, 1)] - side.sent[(j, 1)] for j in jobs if (j, 1) in side.released]
        every = [side.released[k] - side.sent[k] for k in side.sent if k in side.released]
        # a window's tokens are released together: its last token waits only for the check and the hop
        windows: dict[tuple[str, float], float] = {}
        for key, at in side.released.items():
            windows[(key[0], at)] = max(windows.get((key[0], at), 0.0), side.sent.get(key, 0.0))
        closing = [at - last for (_, at), last in windows.items()]
        out[side.name] = {"first_token_ms_p50": 1000 * statistics.median(first),
                          "first_token_ms_p90": 1000 * pct(first, 0.9),
                          "token_ms_p50": 1000 * statistics.median(every), "token_ms_p90": 1000 * pct(every, 0.9),
                          "window_close_ms_p50": 1000 * statistics.median(closing), "windows": len(closing),
                          "tokens_released": len(every), "tokens_sent": len(side.sent),
                          # the side's broker over the streaming (same events on every side: the gate's own
                          # fetches, produces and commits make the difference)
                          "broker_cpu_s": broker_cpu.get(side.name)}
    return out


def stream_quality() -> dict:
    """Each labelled text streamed through a gate of each mode (see the module docstring)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from moderation_quality import load

    rows = load()
    emitter = EventEmitter(None, EVENTS_RAW, EventSource.WORKER)
    out = {}
    for name, settings in MODES.items():
        gate = build_gate(settings)
        counts = {"harmful": 0, "harmful_cut": 0, "clean": 0, "clean_cut": 0, "released_share_of_cut": []}
        spent, streamed = 0.0, 0
        for i, (gold, text, _) in enumerate(rows):
            job = f"q-{name}-{i}"
            pieces = tokens(text)
            released, cut = 0, False
            begin = time.perf_counter()
            events = [emitter.build(TokenDelta, job, 1, text=p, tokens=1) for p in pieces]
            events.append(emitter.build(Completed, job, 1, usage=Usage(completion_tokens=len(pieces))))
            for event in events:
                result = gate.on_event(event)
                released += sum(1 for e in result.publish if isinstance(e, TokenDelta))
                cut = cut or any(isinstance(e, Completed) and e.finish_reason == "content_filter" for e in result.publish)
            spent += time.perf_counter() - begin
            streamed += len(pieces)
            kind = "harmful" if gold else "clean"
            counts[kind] += 1
            counts[f"{kind}_cut"] += cut
            if cut and gold:
                counts["released_share_of_cut"].append(released / len(pieces))
        shares = counts.pop("released_share_of_cut")
        counts["harmful_cut_share"] = counts["harmful_cut"] / max(1, counts["harmful"])
        counts["clean_released_share"] = 1 - counts["clean_cut"] / max(1, counts["clean"])
        counts["released_before_cut_p50"] = statistics.median(shares) if shares else None
        # the gate's own work per token, one stream at a time (no batching across streams, no broker)
        counts["gate_cpu_ms_per_token"] = 1000 * spent / max(1, streamed)
        out[name] = counts
    return out


def prompt_stage_ms(rounds: int = 200) -> float:
    """One prompt checked, as the preparation chain checks a batch of one."""
    moderator = build_moderator(ModerationSettings())
    prompt = "What is the capital of France, and what should I see on a first visit?"
    moderator.check([(None, prompt)])
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        moderator.check([(None, prompt)])
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=8, help="Concurrent streams per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tpot-ms", type=float, default=75.0, help="Time per output token of the played worker.")
    args = parser.parse_args()
    platform = json.loads((ROOT / "bench" / "results" / "text_platform.json").read_text())
    ttft_ms = platform["genloom_sequential"]["ttft_p50_ms"]
    sides = asyncio.run(measure(args))
    stage_ms = prompt_stage_ms()
    base = sides["ungated"]
    added = {}
    for name in MODES:
        side = sides[name]
        first = side["first_token_ms_p50"] - base["first_token_ms_p50"]
        added[name] = {"added_ttft_ms": first + stage_ms, "added_ttft_share": (first + stage_ms) / ttft_ms,
                       "added_token_ms_p50": side["token_ms_p50"] - base["token_ms_p50"],
                       "added_token_ms_p90": side["token_ms_p90"] - base["token_ms_p90"],
                       "added_check_ms_p50": side["window_close_ms_p50"] - base["window_close_ms_p50"]}
    result = {
        "jobs": args.jobs, "rounds": args.rounds, "tpot_ms": args.tpot_ms, "tokens_per_job": len(tokens(ANSWER)),
        "settings": ModerationSettings().model_dump(include={"window_mode", "hold_tokens", "window_tokens",
                                                             "window_chars", "first_window_tokens"}),
        "sides": sides, "prompt_stage_ms_p50": stage_ms, "platform_ttft_p50_ms": ttft_ms, "added": added,
        "stream_quality": stream_quality(),
    }
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
