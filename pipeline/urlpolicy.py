"""The URL policy: which sources Recast may fetch from.

Only http and https; a host must resolve to public addresses only, unless the address lies in
a network listed in ``ingest.allowed_private_networks``. The check runs on the producer's URL,
on every URL an extractor hands back, and on every socket yt-dlp opens (so redirects and DNS
answers that change between look-ups are caught before a byte is sent).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pipeline.errors import ErrorCode, RecastError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})


def _forbidden(message: str) -> RecastError:
    return RecastError(ErrorCode.SOURCE_FORBIDDEN, message)


@dataclass(frozen=True)
class UrlPolicy:
    """Decides whether a URL, host or address may be fetched."""

    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def from_networks(cls, networks: Iterable[str]) -> UrlPolicy:
        return cls(tuple(ipaddress.ip_network(item, strict=False) for item in networks))

    def address_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not (
            address.is_multicast or address.is_reserved or address.is_unspecified
        )

    def check_address(self, address: str, host: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not self.address_allowed(ip):
            raise _forbidden(
                f"{host} resolves to {ip}, a non-public address that Recast may not fetch from."
            )

    def check_host(self, host: str, port: int) -> None:
        try:
            answers = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise RecastError(
                ErrorCode.SOURCE_UNAVAILABLE, f"The host {host} could not be found."
            ) from exc
        for _family, _type, _proto, _name, sockaddr in answers:
            self.check_address(str(sockaddr[0]), host)

    def check_url(self, url: str) -> None:
        """Raise ``source.forbidden`` unless ``url`` is http(s) to an allowed host."""
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
        self.check_host(host, port or (443 if scheme == "https" else 80))
