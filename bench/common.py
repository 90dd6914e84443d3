"""What several benches share: percentiles as the reports state them, and a description of the machine
(the machines these benches run on change between sessions, and the figures with them)."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

#: the instructions that decide the text engine's dtype (infra/models/dtype.py) and its kernels' speed
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid` so far (ns; 0 once it is gone): exact, unlike clock ticks."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def pct(values: list[float], q: float) -> float:
    """The value at quantile `q` of `values` (nearest rank, no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(ms: list[float]) -> dict:
    """Count, p50, p99 and mean of a list of milliseconds, rounded for the results files."""
    return {"n": len(ms), "p50_ms": round(pct(ms, 0.50), 2), "p99_ms": round(pct(ms, 0.99), 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def cpu_model() -> str:
    """This machine's CPU and which of `ISA_FLAGS` it has."""
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    has = [f for f in ISA_FLAGS if f in flags]
    return f"{name} ({', '.join(has) or 'none of ' + ', '.join(ISA_FLAGS)})"


def machine() -> dict:
    """Python, core count, CPU and platform, as a results file records them."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "cpu": cpu_model(),
            "platform": platform.platform()}
