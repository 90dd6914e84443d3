"""The SSRF guard: every internal destination refused in every encoding, names resolved once and
checked, allow-listed networks let through."""

from __future__ import annotations

import ipaddress

import pytest

from infra.net.ssrf import Refused, TargetPolicy, Unresolved, literal_address, parse_networks

REFUSED = [
    "http://127.0.0.1/h", "http://127.1/h", "http://0x7f000001/h", "http://2130706433/h", "http://0177.0.0.1/h",
    "http://[::1]:6379/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://0.0.0.0/",
    "http://[::]/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/", "http://169.254.169.254/latest",
    "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://[fc00::1]/", "http://224.0.0.1/", "http://[ff02::1]/",
    "http://100.100.100.200/", "http://100.64.0.1/", "http://240.0.0.1/", "http://255.255.255.255/",
    "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/", "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/", "http://localhost:8000/", "http://api.localhost/", "http://user@127.0.0.1:6379/",
    "https://0x7f.1/", "ftp://example.com/", "http:///nohost",
]


async def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"no lookup expected for {host}")


@pytest.mark.parametrize("url", REFUSED)
async def test_internal_destinations_are_refused(url):
    with pytest.raises(Refused):
        await TargetPolicy(resolver=_no_dns).check(url)


async def test_public_literal_passes_and_is_pinned():
    target = await TargetPolicy(resolver=_no_dns).check("https://8.8.8.8:8443/h?x=1")
    assert target.ip == ipaddress.ip_address("8.8.8.8") and target.pinned_url == "https://8.8.8.8:8443/h?x=1"
    target = await TargetPolicy(resolver=_no_dns).check("http://[2001:4860:4860::8888]/h")
    assert target.pinned_url == "http://[2001:4860:4860::8888]:80/h" and target.host_header == "[2001:4860:4860::8888]"


async def test_a_name_is_resolved_once_and_every_answer_checked():
    asked: list[str] = []

    def resolver(answers):
        async def resolve(host: str, port: int) -> list[str]:
            asked.append(host)
            return answers
        return resolve

    target = await TargetPolicy(resolver=resolver(["93.184.216.34"])).check("https://hooks.example.com/x")
    assert asked == ["hooks.example.com"]
    assert target.pinned_url == "https://93.184.216.34:443/x" and target.host_header == "hooks.example.com"
    # a name that resolves to an internal address (DNS rebinding's first step), even among public ones
    for answers in (["10.0.0.5"], ["93.184.216.34", "127.0.0.1"], ["::1"], ["169.254.169.254"]):
        with pytest.raises(Refused, match="resolves to"):
            await TargetPolicy(resolver=resolver(answers)).check("https://rebind.example.com/")


async def test_unresolvable_and_slow_names_are_refused_as_unresolved():
    async def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(Unresolved):
        await TargetPolicy(resolver=fails).check("http://nowhere.invalid/")


async def test_allow_list_lets_a_network_through():
    policy = TargetPolicy(allow=parse_networks("127.0.0.1/32, 10.1.0.0/16"), resolver=_no_dns)
    assert str((await policy.check("http://127.0.0.1:9/h")).ip) == "127.0.0.1"
    assert str((await policy.check("http://0x7f000001:9/h")).ip) == "127.0.0.1"
    assert str((await policy.check("http://10.1.2.3/h")).ip) == "10.1.2.3"
    for url in ("http://127.0.0.2/", "http://10.2.0.1/", "http://169.254.169.254/", "http://[::1]/"):
        with pytest.raises(Refused):
            await policy.check(url)


def test_literal_forms():
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert str(literal_address("0x7f.0.0.1")) == "127.0.0.1"
    assert str(literal_address("[::1]")) == "::1"
    assert literal_address("example.com") is None
    with pytest.raises(ValueError):
        parse_networks("not-a-network")
