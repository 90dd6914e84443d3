"""The fan-out's write: released events into per-job replay logs and status records in Redis (the apply
itself is infra.redis.jobstore's), shared by the fan-out tap (streams/fanout) and the moderation gate, which
writes what it releases itself (`ReplayWriter`)."""
