"""How the Cassandra store turns `expires_at` into a native TTL (infra/memory/cassandra.py)."""

from __future__ import annotations

from infra.memory.cassandra import MAX_TTL_S, ttl_of


def test_ttl_of_rounds_up_and_bounds_it():
    assert ttl_of(None, 1000.0) == 0  # never expires: no TTL
    assert ttl_of(1010.2, 1000.0) == 11  # rounded up: the row never disappears before expires_at
    assert ttl_of(1000.0, 1000.0) == 1 and ttl_of(5.0, 1000.0) == 1  # already due: gone within a second
    assert ttl_of(1000.0 + MAX_TTL_S, 1000.0) == MAX_TTL_S
    assert ttl_of(1000.0 + MAX_TTL_S + 1, 1000.0) == 0  # past Cassandra's limit: the sweep ends it
