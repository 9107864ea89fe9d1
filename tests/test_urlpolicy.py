"""The URL policy refuses non-http schemes and non-public addresses unless allowed, judges
IPv6 addresses that carry an IPv4 address by that address, and resolves a host once."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from pipeline.core.errors import ErrorCode, RecastError
from pipeline.core.urlpolicy import CheckedAddress, UrlPolicy

STRICT = UrlPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.org/video.mp4",
        "javascript:alert(1)",
        "http://127.0.0.1/video.mp4",
        "http://localhost:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.10/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://240.0.0.1/",
        "http://100.64.0.1/",
        "http://user:secret@93.184.216.34/",
        "http:///no-host",
    ],
)
def test_refused(url: str) -> None:
    with pytest.raises(RecastError) as info:
        STRICT.check_url(url)
    assert info.value.code is ErrorCode.SOURCE_FORBIDDEN
    assert not info.value.transient


def test_public_address_passes() -> None:
    STRICT.check_url("https://93.184.216.34/watch?v=1")


def test_allowed_network_lets_exactly_that_network_through() -> None:
    policy = UrlPolicy.from_networks(["127.0.0.1/32"])
    policy.check_url("http://127.0.0.1:8000/video.mp4")
    with pytest.raises(RecastError):
        policy.check_url("http://127.0.0.2:8000/video.mp4")
    with pytest.raises(RecastError):
        policy.check_url("http://169.254.169.254/")


def test_unresolvable_host_is_unavailable_not_forbidden() -> None:
    with pytest.raises(RecastError) as info:
        STRICT.check_url("http://no-such-host.invalid/")
    assert info.value.code is ErrorCode.SOURCE_UNAVAILABLE


# Teredo packs the client's IPv4 address inverted into the last 32 bits.
TEREDO_SERVER = "2001:0:4136:e378:8000:63bf"
TEREDO_CLIENT_10_0_0_1 = f"{TEREDO_SERVER}:f5ff:fffe"
TEREDO_CLIENT_8_9_8_8 = f"{TEREDO_SERVER}:f7f6:f7f7"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("2a00:1450:4001:80b::200e", True),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:c0a8:101::", False),  # 6to4 of 192.168.1.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        (TEREDO_CLIENT_10_0_0_1, False),
        (TEREDO_CLIENT_8_9_8_8, False),  # Teredo is never public, even to a public client
        ("64:ff9b::c0a8:101", False),  # NAT64 of 192.168.1.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b:1::808:808", False),  # local-use NAT64: not public
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("::a9fe:a9fe", False),  # IPv4-compatible 169.254.169.254
        ("::808:808", True),  # IPv4-compatible 8.8.8.8
        ("::ffff:0:7f00:1", False),  # IPv4-translated 127.0.0.1
        ("::ffff:0:808:808", True),  # IPv4-translated 8.8.8.8
        ("fec0::1", False),  # site-local
        ("fed0::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("::1", False),
        ("::", False),
        ("2001:db8::1", False),
        ("ff02::1", False),
    ],
)
def test_addresses_are_judged_by_the_ipv4_address_they_carry(address: str, allowed: bool) -> None:
    assert STRICT.address_allowed(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize(
    ("address", "networks", "allowed"),
    [
        ("2002:7f00:1::", ["127.0.0.1/32"], True),  # the carried address is what is listed
        ("2002:7f00:2::", ["127.0.0.1/32"], False),
        ("64:ff9b::7f00:1", ["127.0.0.1/32"], True),
        ("2002:7f00:1::", ["2002::/16"], False),  # listing the wrapper does not list 127.0.0.1
        (TEREDO_CLIENT_8_9_8_8, ["2001::/32"], True),
        (TEREDO_CLIENT_10_0_0_1, ["2001::/32"], False),  # listed prefix, private client
        (TEREDO_CLIENT_10_0_0_1, ["10.0.0.0/8"], False),  # listed client, unlisted prefix
        ("64:ff9b:1::808:808", ["64:ff9b:1::/48"], True),
        ("64:ff9b:1::a00:1", ["64:ff9b:1::/48"], False),
        ("fec0::1", ["fec0::/10"], True),
        ("::1", ["::1/128"], True),
    ],
)
def test_listed_networks_and_embedded_addresses(
    address: str, networks: list[str], allowed: bool
) -> None:
    policy = UrlPolicy.from_networks(networks)
    assert policy.address_allowed(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize("url", ["http://[2002:7f00:1::]/", "http://[fec0::1]:8080/"])
def test_check_url_refuses_wrapped_private_addresses(url: str) -> None:
    with pytest.raises(RecastError) as info:
        UrlPolicy.from_networks(["127.0.0.2/32"]).check_url(url)
    assert info.value.code is ErrorCode.SOURCE_FORBIDDEN


def test_resolve_returns_the_checked_addresses_to_connect_to() -> None:
    policy = UrlPolicy.from_networks(["127.0.0.1/32"])
    assert policy.resolve("127.0.0.1", 8080) == [CheckedAddress(socket.AF_INET, "127.0.0.1", 8080)]
    assert policy.resolve_url("https://127.0.0.1/x") == [
        CheckedAddress(socket.AF_INET, "127.0.0.1", 443)
    ]
    with pytest.raises(RecastError) as info:
        policy.resolve("127.0.0.2", 80)
    assert info.value.code is ErrorCode.SOURCE_FORBIDDEN


def test_resolve_refuses_a_host_if_any_answer_is_not_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "mixed.example.test": ["127.0.0.1", "127.0.0.2"],
        "good.example.test": ["127.0.0.1", "2002:808:808::1"],
    }

    def fake_getaddrinfo(host: str, port: int, *args: object) -> list[tuple[Any, ...]]:
        return [
            (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)
            for ip in answers[host]
            for family, sockaddr in [
                (socket.AF_INET6, (ip, port, 0, 0)) if ":" in ip else (socket.AF_INET, (ip, port))
            ]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    policy = UrlPolicy.from_networks(["127.0.0.1/32"])
    with pytest.raises(RecastError) as info:
        policy.resolve("mixed.example.test", 80)
    assert info.value.code is ErrorCode.SOURCE_FORBIDDEN and "127.0.0.2" in info.value.message
    assert [a.ip for a in policy.resolve("good.example.test", 80)] == [
        "127.0.0.1",
        "2002:808:808::1",
    ]


def test_a_host_name_that_is_not_one_is_refused_not_a_crash() -> None:
    policy = UrlPolicy()
    for host in ("x" * 64 + ".example", "a..b", "-" * 300):
        with pytest.raises(RecastError) as caught:
            policy.check_url(f"http://{host}/video.mp4")
        assert caught.value.code in (ErrorCode.SOURCE_FORBIDDEN, ErrorCode.SOURCE_UNAVAILABLE)
