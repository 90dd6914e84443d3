"""Where a user-chosen URL may point: resolve its host once, refuse internal addresses, pin the IP.

The gateway checks a webhook URL at submit and the deliverer checks it again before every attempt,
with the same `TargetPolicy`. The check resolves the host itself (every encoding of an address is
read as the resolver reads it: ``0x7f000001``, ``2130706433``, ``127.1``, ``[::1]``,
``::ffff:127.0.0.1``) and refuses the URL when *any* address it resolves to is loopback, private,
link-local, unique-local, multicast, unspecified, reserved, shared (CGNAT) or a cloud metadata
address, or when the name itself is a metadata or localhost name, unless an allow-listed network
holds the address. The caller then connects to the returned IP (`Target.pinned_url`), sending the
original Host header and TLS SNI, so no second DNS lookup can answer differently (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: cloud metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba, Oracle): refused even where
#: a broader rule would not catch them, and named in the refusal
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200",
                                      "192.0.0.192")
)
#: host names of metadata services and of the machine itself
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal", "localhost", "localhost.localdomain"})
#: NAT64 (64:ff9b::/96) embeds an IPv4 address that is checked as itself
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(ValueError):
    """The URL may not be called; the message says why and what would be accepted."""


@dataclass(frozen=True)
class Target:
    """A checked URL and the address it must be reached at."""

    url: str
    scheme: str
    host: str
    port: int
    ip: IPAddress

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked IP (what is actually connected to)."""
        parts = urlsplit(self.url)
        ip = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        netloc = f"{ip}:{self.port}"
        return parts._replace(netloc=netloc).geturl()


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (``127.0.0.1/32, 10.0.0.0/8``); a bad one raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def literal_address(host: str) -> IPAddress | None:
    """The address a host literal means, in every form a resolver accepts (None for a name)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:  # the legacy IPv4 forms inet_aton reads: 0x7f000001, 2130706433, 127.1, 0177.0.0.1
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _effective(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else itself."""
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def why_forbidden(ip: IPAddress) -> str | None:
    """Why an address may not be called, or None for a public unicast address."""
    for candidate in {ip, _effective(ip)}:
        if candidate in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_unspecified:
            return "the unspecified address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.version == 6 and candidate in ipaddress.ip_network("fc00::/7"):
            return "a unique-local address"
        if candidate.is_private:
            return "a private address"
        if candidate.is_reserved or not candidate.is_global:
            return "a reserved or non-global address"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


@dataclass(frozen=True)
class TargetPolicy:
    """Which destinations are allowed: public unicast only, plus the allow-listed networks."""

    allow: tuple[Network, ...] = ()
    resolve_timeout_s: float = 5.0
    resolver: Resolver = system_resolve

    def allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    async def check(self, url: str) -> Target:
        """The target to connect to; Refused with the reason otherwise."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise Refused(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise Refused("only http and https URLs are accepted")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise Refused("the URL has no host")
        port = port or (443 if scheme == "https" else 80)
        literal = literal_address(host)
        if literal is not None:
            addresses: Iterable[IPAddress] = [literal]
        else:
            name = host.lower()
            if name in METADATA_NAMES or name.endswith(".localhost"):
                raise Refused(f"{host} is a metadata or local host name")
            addresses = await self._resolve(host, port)
        chosen: IPAddress | None = None
        for ip in addresses:
            reason = None if self.allowed(ip) else why_forbidden(ip)
            if reason:
                shown = host if literal is None else url
                raise Refused(f"{shown} resolves to {ip}, {reason}: use a public address")
            chosen = chosen or ip
        if chosen is None:
            raise Refused(f"{host} does not resolve to any address")
        return Target(url=url, scheme=scheme, host=host, port=port, ip=chosen)

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self.resolve_timeout_s):
                raw = await self.resolver(host, port)
        except (OSError, TimeoutError) as exc:
            raise Unresolved(f"{host} could not be resolved: {exc or 'timed out'}") from None
        return [ipaddress.ip_address(a.split("%", 1)[0]) for a in raw]


class Unresolved(Refused):
    """The host did not resolve (now): a deliverer may try again later; a submit is refused."""
