"""The URL policy: which hosts Recast may fetch from or call back.

Only http and https; a host must resolve to public addresses only, unless the address lies in
a network listed in ``ingest.allowed_private_networks``. The check runs on the producer's URL,
on every URL an extractor hands back, on every socket yt-dlp opens (so redirects and DNS
answers that change between look-ups are caught before a byte is sent) and on every webhook
callback URL.

IPv6 addresses that carry an IPv4 address (IPv4-mapped and -translated, IPv4-compatible, 6to4,
NAT64, Teredo) are judged by the IPv4 address inside them, so ``2002:7f00:1::`` cannot smuggle
``127.0.0.1`` past the check. Teredo and the local-use NAT64 prefix are never public: they pass
only when listed, and then their IPv4 address must pass too.

:meth:`UrlPolicy.resolve` looks a host up once and returns the checked answers, so a client can
connect to exactly those addresses instead of resolving the name again (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pipeline.core.errors import ErrorCode, RecastError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})

TEREDO = ipaddress.IPv6Network("2001::/32")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
UNSPECIFIED_AND_LOOPBACK = ipaddress.IPv6Network("::/127")

# Never public, whatever this Python's ipaddress tables say (they changed between releases).
NOT_PUBLIC: tuple[IPNetwork, ...] = (
    ipaddress.IPv6Network("fec0::/10"),  # site-local (deprecated, still routed internally)
    TEREDO,
    NAT64_LOCAL_USE,
)


def _forbidden(message: str) -> RecastError:
    return RecastError(ErrorCode.SOURCE_FORBIDDEN, message)


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def _low_32_bits(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (and so reaches), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): packets go to the client
    if address in NAT64_WELL_KNOWN or address in NAT64_LOCAL_USE or address in IPV4_TRANSLATED:
        return _low_32_bits(address)
    if address in IPV4_COMPATIBLE and address not in UNSPECIFIED_AND_LOOPBACK:
        return _low_32_bits(address)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a global unicast address (no listed exception applied)."""
    if _in_any(address, NOT_PUBLIC):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


@dataclass(frozen=True)
class CheckedAddress:
    """One DNS answer that passed the policy: connect to ``ip`` (an address, never a name)."""

    family: socket.AddressFamily
    ip: str
    port: int


@dataclass(frozen=True)
class UrlPolicy:
    """Decides whether a URL, host or address may be fetched."""

    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def from_networks(cls, networks: Iterable[str]) -> UrlPolicy:
        return cls(tuple(ipaddress.ip_network(item, strict=False) for item in networks))

    def listed(self, address: IPAddress) -> bool:
        return _in_any(address, self.allowed_networks)

    def address_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                if _in_any(address, NOT_PUBLIC) and not self.listed(address):
                    return False
                return self.address_allowed(inner)
        return self.listed(address) or is_public(address)

    def check_address(self, address: str, host: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not self.address_allowed(ip):
            raise _forbidden(
                f"{host} resolves to {ip}, a non-public address that Recast may not fetch from."
            )

    def resolve(self, host: str, port: int) -> list[CheckedAddress]:
        """Look ``host`` up once; every answer must pass, else ``source.forbidden``. Connect to
        the returned addresses, never to the name, so a second look-up cannot change them."""
        try:
            answers = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise RecastError(
                ErrorCode.SOURCE_UNAVAILABLE, f"The host {host} could not be found."
            ) from exc
        except UnicodeError as exc:  # a label over 63 characters, or not encodable as IDNA
            raise _forbidden(f"{host[:80]!r} is not a valid host name.") from exc
        checked: list[CheckedAddress] = []
        for family, _type, _proto, _name, sockaddr in answers:
            ip, answered_port = str(sockaddr[0]), int(sockaddr[1])
            self.check_address(ip, host)
            address = CheckedAddress(socket.AddressFamily(family), ip, answered_port)
            if address not in checked:
                checked.append(address)
        return checked

    def target(self, url: str) -> tuple[str, int]:
        """The (host, port) of ``url``, refused unless it is plain http(s) with a host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise _forbidden(f"{url!r} is not a valid URL.") from exc
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise _forbidden(f"Only http and https URLs are accepted, not {scheme or 'none'}:.")
        host = parts.hostname
        if not host:
            raise _forbidden(f"The URL {url!r} has no host.")
        if parts.username or parts.password:
            raise _forbidden("URLs with credentials in them are not accepted.")
        return host, port or (443 if scheme == "https" else 80)

    def resolve_url(self, url: str) -> list[CheckedAddress]:
        """:meth:`target` then :meth:`resolve`: the addresses a request to ``url`` may use."""
        return self.resolve(*self.target(url))

    def check_url(self, url: str) -> None:
        """Raise ``source.forbidden`` unless ``url`` is http(s) to an allowed host."""
        self.resolve_url(url)
