"""The faust app that hosts every stream processor. Agents live in one folder per feature."""

from __future__ import annotations

import faust
from faust.auth import SASLCredentials, SSLCredentials

from infra.kafka.clients import security_args
from infra.kafka.compat import harden
from infra.kafka.topics import CONTROL, EVENTS, REQUESTS, jobs_topic
from infra.settings import KafkaSettings
from infra.settings.streams import StreamsSettings
from schemas.enums import Modality

from .transport import LowLatencyTransport

RAW = {"value_type": bytes, "key_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}


class Topics:
    """faust handles for the catalogue topics this app touches (declared, never created here)."""

    def __init__(self, app: faust.App) -> None:
        self.requests = app.topic(REQUESTS, internal=False, **RAW)
        self.events = app.topic(EVENTS, internal=False, **RAW)
        self.control = app.topic(CONTROL, internal=False, **RAW)
        self.jobs = {m: app.topic(jobs_topic(m), internal=False, **RAW) for m in Modality}


class GenloomApp(faust.App):
    """faust.App with genloom's low-latency consumer transport."""

    def __init__(self, *args, fetch_max_wait_ms: int = 10, **kwargs) -> None:
        harden()  # faust's aiokafka clients too must survive a broker restart (infra.kafka.compat)
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def _new_transport(self):
        return LowLatencyTransport(self.conf.broker_consumer, self)


def broker_credentials(kafka: KafkaSettings) -> SASLCredentials | SSLCredentials | None:
    """faust's form of the TLS and SASL arguments every genloom Kafka client gets (`security_args`)."""
    args = security_args(kafka)
    if "sasl_mechanism" in args:
        return SASLCredentials(username=args["sasl_plain_username"], password=args["sasl_plain_password"],
                               ssl_context=args.get("ssl_context"), mechanism=args["sasl_mechanism"])
    if "ssl_context" in args:
        return SSLCredentials(args["ssl_context"])
    return None


def create_app(bootstrap: str, settings: StreamsSettings,
               kafka: KafkaSettings | None = None) -> tuple[faust.App, Topics]:
    app = GenloomApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=f"kafka://{bootstrap}",
        broker_credentials=broker_credentials(kafka or KafkaSettings()),
        store="memory://",
        autodiscover=False,
        topic_allow_declare=False,  # the catalogue creates topics with their final partitions
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_max_poll_interval=300.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=settings.max_message_bytes + 1024,
        consumer_max_fetch_size=settings.max_message_bytes + 1024,
        web_enabled=settings.web_port != 0,
        web_port=settings.web_port or 6066,
        web_host="127.0.0.1",
    )
    return app, Topics(app)
