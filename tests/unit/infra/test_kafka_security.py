"""Kafka TLS and SASL settings become the connection arguments of every client (no TLS broker needed)."""

from __future__ import annotations

import ssl
import subprocess

import pytest
from pydantic import ValidationError

from infra.kafka import clients
from infra.settings import KafkaSettings
from streams.app import broker_credentials


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """A self-signed certificate and its key (it serves as the CA too)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=genloom",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_the_default_is_plaintext_with_no_credentials():
    assert clients.security_args(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(KafkaSettings()) is None


def test_ssl_builds_a_verifying_context_from_the_files(pem):
    cert, key = pem
    args = clients.security_args(KafkaSettings(security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert,
                                               ssl_keyfile=key))
    context = args["ssl_context"]
    assert args["security_protocol"] == "SSL" and isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "genloom"),),)]
    with pytest.raises(FileNotFoundError):
        clients.security_args(KafkaSettings(security_protocol="SSL", ssl_cafile=cert.parent / "missing.pem"))


def test_the_tls_context_is_built_once_per_process_for_the_same_files(pem):
    cert, key = pem
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key)
    first = clients.security_args(settings)["ssl_context"]
    assert clients.security_args(settings)["ssl_context"] is first
    assert clients.security_args(settings.model_copy())["ssl_context"] is first
    other = clients.security_args(KafkaSettings(security_protocol="SSL", ssl_cafile=cert))["ssl_context"]
    assert other is not first  # other files, another context


def test_sasl_fields_and_their_faust_form(pem):
    settings = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
                             sasl_password="s3cret", ssl_cafile=pem[0])
    args = clients.security_args(settings)
    assert {k: v for k, v in args.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}
    assert "s3cret" not in repr(settings)  # a SecretStr
    credentials = broker_credentials(settings)
    assert (credentials.username, credentials.password, credentials.mechanism.value,
            credentials.protocol.value) == ("svc", "s3cret", "SCRAM-SHA-512", "SASL_SSL")
    plain = clients.security_args(KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u",
                                                sasl_password="p"))
    assert plain == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                     "sasl_plain_username": "u", "sasl_plain_password": "p"}
    with pytest.raises(ValueError, match="GENLOOM_KAFKA_SASL_USERNAME"):
        clients.security_args(KafkaSettings(security_protocol="SASL_PLAINTEXT"))
    with pytest.raises(ValidationError):
        KafkaSettings(security_protocol="TLS")


def test_every_client_factory_takes_them_from_the_environment(monkeypatch):
    """The one place they are applied: each factory reads GENLOOM_KAFKA_* (as its bootstrap comes from)."""
    monkeypatch.setenv("GENLOOM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("GENLOOM_KAFKA_SASL_USERNAME", "env-user")
    monkeypatch.setenv("GENLOOM_KAFKA_SASL_PASSWORD", "env-pass")
    monkeypatch.setattr(clients, "RingingProducer", lambda *topics, **kwargs: kwargs)
    monkeypatch.setattr(clients, "AIOKafkaConsumer", lambda *topics, **kwargs: kwargs)
    for kwargs in (clients.producer("127.0.0.1:1"), clients.consumer("127.0.0.1:1", group_id=None)):
        assert (kwargs["security_protocol"], kwargs["sasl_mechanism"], kwargs["sasl_plain_username"],
                kwargs["sasl_plain_password"]) == ("SASL_PLAINTEXT", "PLAIN", "env-user", "env-pass")
