"""The committed JSON Schemas and AsyncAPI document must match schemas/ (run `genloom schema`)."""

from pathlib import Path

from infra.docs import asyncapi, render, stale

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_published_contract_is_current():
    assert stale(DOCS) == [], "docs are stale: run `genloom schema` and commit docs/"


def test_asyncapi_lists_every_catalogue_topic_with_partitions():
    doc = asyncapi()
    addresses = {c["address"]: c for c in doc["channels"].values()}
    assert "genloom.requests" in addresses and "genloom.jobs.video" in addresses
    assert addresses["genloom.control"]["bindings"]["kafka"]["partitions"] == 1
    assert set(doc["components"]["messages"]) == {"GenerationRequest", "JobEvent", "ControlMessage", "MemoryCommand",
                                                  "DeadLetter"}


def test_event_schema_is_a_discriminated_union_with_descriptions():
    import json

    schema = json.loads(render()["schema/JobEvent.json"])
    assert schema["discriminator"]["propertyName"] == "type"
    assert "completed" in schema["discriminator"]["mapping"]
    assert schema["$defs"]["Failed"]["properties"]["message"]["description"]


def _bench_report():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_report", DOCS.parent / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_benchmarks_doc_matches_the_results_files():
    assert (DOCS / "benchmarks.md").read_text() == _bench_report().render(), "run `python bench/report.py`"


def test_cache_hit_section_names_the_chain_the_hit_went_through():
    result = {"requests": 5, "baseline_direct_instant_worker": {"n": 5, "p50_ms": 20.0, "p99_ms": 30.0},
              "genloom_cache_hit": {"n": 5, "p50_ms": 40.0, "p99_ms": 50.0}, "machine": {"cpus": 2},
              "load_average_1m": 1.0}
    cache_hit = _bench_report().cache_hit
    measured = "\n".join(cache_hit({**result, "chain": ["privacy", "embedding", "cache"]}))
    assert "`python -m streams` process, privacy→embedding→cache, answers it" in measured
    assert "| 40.0 | 50.0 |" in measured and "predate" not in measured
    older = "\n".join(cache_hit(result))  # a results file written before the bench ran the real processor
    assert "predate" in older and "privacy→embedding→cache" not in older


def test_an_ab_section_gives_medians_per_level_and_which_way_each_moved():
    def run(r: int, setting: str | None, ttfts: tuple[float, float]) -> dict:
        return {"round": r, "setting": setting, "levels": [{"tokens_per_s": 20.0 + r, "ttft_p50_ms": t} for t in ttfts]}

    ab = "GENLOOM_KAFKA_BUSY_POLL_MS=5"
    d = {"ab": ab, "levels": [1, 4], "threads": [1], "seconds": 40.0, "cpus": 2, "cpu": "test cpu",
         "runs": [run(1, None, (150, 400)), run(1, ab, (140, 450)), run(2, None, (160, 420)),
                  run(2, ab, (130, 480)), run(3, None, (155, 410)), run(3, ab, (135, 470))]}
    text = "\n".join(_bench_report().text_peer_ab(d))
    assert "| 1 | 22.0 | 22.0 | 155.0 | 135.0 | -20.0 ms (-13%) |" in text  # medians over the three rounds
    assert "| 4 | 22.0 | 22.0 | 410.0 | 470.0 | +60.0 ms (+15%) |" in text
    assert "shorter at 1 and longer at 4 stream(s)" in text
    assert f"--ab {ab} --threads 1 --levels 1 4 --seconds 40 --rounds 3" in text


def test_the_first_token_section_sums_what_runs_beside_the_engine_and_compares_interleaved_runs():
    def first_token(engine: float, broker: float, streams: float) -> dict:
        return {"jobs": 10, "max_tokens": 8, "wall_ms_p50": {"stages": 90.0, "prefill": 500.0},
                "cpu_ms_mean": {"engine": {"stages": 20.0, "prefill": engine},
                                "broker": {"stages": 30.0, "prefill": broker},
                                "streams": {"stages": 40.0, "prefill": streams}}}

    pairs = {"note": "test machine", "runs": [
        {"checkout": "before", "pickup": {"p50_ms": 90.0}, "first_token": first_token(400.0, 100.0, 100.0)},
        {"checkout": "after", "pickup": {"p50_ms": 95.0}, "first_token": first_token(500.0, 25.0, 25.0)},
        {"checkout": "before", "pickup": {"p50_ms": 80.0}, "first_token": first_token(500.0, 100.0, 50.0)},
        {"checkout": "after", "pickup": {"p50_ms": 85.0}, "first_token": first_token(400.0, 20.0, 20.0)}]}
    report = _bench_report()
    text = "\n".join(report.first_token_cpu({"after": {"first_token": first_token(500.0, 25.0, 25.0)},
                                             "missing": None}, pairs))
    assert "| after | submit → `started` | 90.0 | 20.0 |" in text
    assert text.count("\n| after |") == 2 and "missing" not in text  # its two windows
    assert "| 50.0 |" in text  # everything but the engine in the prompt pass's window: 25 + 25
    assert "before: pickup p50 85.0 ms, else / engine 0.40" in text  # medians of 0.50 and 0.30
    assert "after: pickup p50 90.0 ms, else / engine 0.10" in text
    assert report.first_token_cpu({"none": None}) == []
