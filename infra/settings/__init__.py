"""Settings, one class per component, read from ``GENLOOM_*`` variables at the edge.

Only the CLI and app factories instantiate these; everything below them takes plain arguments.
Every component's settings live here (the served models' in `infra.models.settings`), so the CLI
and the README's configuration table read them without importing the components.
"""

from .core import (
    KafkaSettings,
    MetricsSettings,
    RedisSettings,
    SigningSettings,
    StorageSettings,
    TopicSettings,
    TracingSettings,
)

__all__ = ["KafkaSettings", "MetricsSettings", "RedisSettings", "SigningSettings", "StorageSettings", "TopicSettings",
           "TracingSettings"]
