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
    assert set(doc["components"]["messages"]) == {"GenerationRequest", "JobEvent", "ControlMessage", "DeadLetter"}


def test_event_schema_is_a_discriminated_union_with_descriptions():
    import json

    schema = json.loads(render()["schema/JobEvent.json"])
    assert schema["discriminator"]["propertyName"] == "type"
    assert "completed" in schema["discriminator"]["mapping"]
    assert schema["$defs"]["Failed"]["properties"]["message"]["description"]


def test_benchmarks_doc_matches_the_results_files():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_report", DOCS.parent / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert (DOCS / "benchmarks.md").read_text() == report.render(), "run `python bench/report.py`"
