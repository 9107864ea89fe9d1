"""The URL policy refuses non-http schemes and non-public addresses unless allowed."""

from __future__ import annotations

import pytest

from pipeline.errors import ErrorCode, RecastError
from pipeline.urlpolicy import UrlPolicy

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
