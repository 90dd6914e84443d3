"""Stream processor settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_STREAMS_", extra="ignore", frozen=True)

    app_id: str = Field(default="genloom-streams", description="Faust app id (consumer group).")
    session_timeout_s: float = Field(
        default=6.0, description="Group session timeout; joins take about half of it."
    )
    heartbeat_s: float = Field(default=1.0)
    rebalance_timeout_s: float = Field(default=10.0)
    fetch_max_wait_ms: int = Field(
        default=10, ge=1, description="Consumer fetch wait; the bundled broker never ends a wait early."
    )
    web_port: int = Field(default=0, description="Faust web port; 0 runs without the web server.")
    max_message_bytes: int = Field(default=8 * 1024 * 1024, description="Larger requests are dead-lettered.")
