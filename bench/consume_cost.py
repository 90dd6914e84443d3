"""What every genloom producer and consumer pays per message, beside the code it replaced, in one process.

- A keyed send's partition: `KeyedPartitioner`, which keeps each key's murmur2, against aiokafka's
  `DefaultPartitioner`, which computes murmur2 in pure Python on every send (what the producers used before
  3a1c679). The keys are job ids: a worker and the moderation gate send every token of a job under its id.
- A poll's offsets through `OffsetTracker`: each record added, then marked done in order, as a tap does. This is
  compared with the tracker as it was before 7e7000f (`ScanTracker` below, its logic unchanged), which found the
  commit position with `min()` over the pending set on every `done`.

The two sides alternate, `--rounds` times each; the figure is the median of the rounds. Both sides must agree on
every partition and every commit position, or the bench stops. Writes ``bench/results/consume_cost.json``.

    python bench/consume_cost.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from bench.common import cpu_model  # noqa: E402
from infra.kafka.clients import KeyedPartitioner  # noqa: E402
from infra.kafka.offsets import OffsetTracker  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "consume_cost.json"
PARTITIONS = list(range(8))
POLLS = (32, 256)


class ScanTracker:
    """The offset tracker before 7e7000f, for the baseline: the smallest pending offset, found by a scan on
    every `done`."""

    def __init__(self) -> None:
        self._pending: dict = {}
        self._highest: dict = {}
        self._committed: dict = {}

    def add(self, partition, offset: int) -> None:
        self._pending.setdefault(partition, set()).add(offset)
        self._highest[partition] = max(offset, self._highest.get(partition, -1))

    def done(self, partition, offset: int) -> int | None:
        pending = self._pending.get(partition)
        if pending is None or offset not in pending:
            return None
        pending.discard(offset)
        position = min(pending) if pending else self._highest[partition] + 1
        if position == self._committed.get(partition):
            return None
        self._committed[partition] = position
        return position


def partitions_us(partitioner, keys: list[bytes], sends: int) -> tuple[float, list[int]]:
    """Microseconds per keyed send's partition choice, over `sends` sends cycling through `keys`."""
    chosen = [partitioner(key, PARTITIONS, PARTITIONS) for key in keys]  # a job's first send: the hash is made
    began = time.perf_counter()
    for i in range(sends):
        partitioner(keys[i % len(keys)], PARTITIONS, PARTITIONS)
    return (time.perf_counter() - began) * 1e6 / sends, chosen


def tracking_us(tracker_class, poll: int, polls: int) -> tuple[float, list[int | None]]:
    """Microseconds per record: `polls` polls of `poll` records, each added, then each marked done in order."""
    tracker, positions, offset = tracker_class(), [], 0
    began = time.perf_counter()
    for _ in range(polls):
        offsets = range(offset, offset + poll)
        for o in offsets:
            tracker.add("t-0", o)
        for o in offsets:
            positions.append(tracker.done("t-0", o))
        offset += poll
    return (time.perf_counter() - began) * 1e6 / (poll * polls), positions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=100, help="distinct keys (jobs streaming at once)")
    parser.add_argument("--sends", type=int, default=50_000)
    parser.add_argument("--records", type=int, default=65_536, help="records tracked per round and poll size")
    args = parser.parse_args()
    keys = [f"j{uuid.uuid4().hex}".encode() for _ in range(args.jobs)]
    sides = {"partition": (KeyedPartitioner, DefaultPartitioner),
             **{f"offsets_{poll}": (OffsetTracker, ScanTracker) for poll in POLLS}}
    times: dict[str, dict[str, list[float]]] = {name: {"genloom": [], "baseline": []} for name in sides}
    for r in range(args.rounds):
        for name, (ours, theirs) in sides.items():
            order = [("genloom", ours), ("baseline", theirs)]
            if r % 2:
                order.reverse()
            outcomes = {}
            for side, cls in order:
                if name == "partition":
                    us, outcome = partitions_us(cls(), keys, args.sends)
                else:
                    poll = int(name.split("_")[1])
                    us, outcome = tracking_us(cls, poll, args.records // poll)
                times[name][side].append(us)
                outcomes[side] = outcome
            if outcomes["genloom"] != outcomes["baseline"]:
                raise SystemExit(f"{name}: genloom and the baseline disagree; the comparison is void")
        print(f"round {r + 1}: " + ", ".join(f"{n} {t['genloom'][-1]:.2f} / {t['baseline'][-1]:.2f} us"
                                             for n, t in times.items()), flush=True)
    results = {"machine": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
               "cpus": os.cpu_count(), "rounds": args.rounds, "jobs": args.jobs, "sends": args.sends,
               "records": args.records, "partitions": len(PARTITIONS),
               "costs": {name: {side: {"median_us": statistics.median(v), "rounds_us": v} for side, v in t.items()}
                         for name, t in times.items()}}
    for name, c in results["costs"].items():
        print(f"{name}: genloom {c['genloom']['median_us']:.2f} us, baseline {c['baseline']['median_us']:.2f} us"
              f" ({c['baseline']['median_us'] / c['genloom']['median_us']:.1f}x)")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
