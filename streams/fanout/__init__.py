"""Fan-out: released events into per-job replay logs and status records in Redis, and webhooks."""
