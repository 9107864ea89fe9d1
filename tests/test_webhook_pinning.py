"""Webhook callbacks connect to the address that passed the URL policy, never to a second DNS
answer: real local HTTP(S) servers on 127.0.0.1 (allowed) and 127.0.0.2 (internal, not
allowed), and a made-up host name whose DNS answers are scripted (rebinding)."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from pipeline.core.settings import Settings
from pipeline.core.urlpolicy import CheckedAddress, UrlPolicy
from pipeline.publish import verify_signature, webhooks
from tests.conftest import make_settings

SECRET = "whsec_pinning_9a2e"
HOST = "hooks.example.test"
PUBLIC_IP = "127.0.0.1"  # in ingest.allowed_private_networks (make_settings)
INTERNAL_IP = "127.0.0.2"  # not allowed: stands for an internal service


@dataclass
class Logged:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LoggingServer:
    """An HTTP(S) endpoint that logs every request and answers ``status`` (with ``location``)."""

    ip: str
    port: int = 0
    tls: ssl.SSLContext | None = None
    status: int = 200
    location: str = ""
    requests: list[Logged] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def start(self) -> LoggingServer:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                state.requests.append(Logged(self.path, dict(self.headers.items()), body))
                self.send_response(state.status)
                if state.location:
                    self.send_header("Location", state.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((self.ip, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[LoggingServer, LoggingServer]]:
    """An allowed server and an internal one on the same port (a DNS answer carries no port)."""
    for _ in range(20):
        public = LoggingServer(PUBLIC_IP).start()
        try:
            internal = LoggingServer(INTERNAL_IP, public.port).start()
        except OSError:  # that port is taken on 127.0.0.2: try another
            public.stop()
            continue
        yield public, internal
        public.stop()
        internal.stop()
        return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@dataclass
class FakeDns:
    """Answers for made-up names: the first look-up gets ``first``, later ones ``later``."""

    first: list[str]
    later: list[str]
    lookups: list[str] = field(default_factory=list)

    def answer(self, host: str, port: int) -> list[tuple[Any, ...]]:
        ips = self.first if not self.lookups else self.later
        self.lookups.append(host)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port)) for ip in ips
        ]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str], list[str]], FakeDns]:
    real_getaddrinfo = socket.getaddrinfo

    def install(first: list[str], later: list[str]) -> FakeDns:
        dns = FakeDns(first, later)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, str) and host.endswith(".example.test"):
                return dns.answer(host, int(port))
            return real_getaddrinfo(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return dns

    return install


def hook_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        publish={"webhook_urls": [], "webhook_secret": SECRET, "webhook_timeout_s": 2.0},
    )


def deliver_callback(settings: Settings, url: str) -> webhooks.Delivery | None:
    """Queue one event for a job's callback ``url``, make one attempt; the delivery as left
    in the outbox or the dead letters (None when it was delivered)."""
    event = webhooks.WebhookEvent(type=webhooks.EventType.CARD_READY, job_id="j1", card_id="c1")
    outbox = webhooks.Outbox.for_settings(settings)
    path = outbox.add(event, url, settings, trusted=False)
    assert webhooks.Sender(settings, outbox).deliver_due() == 1
    for candidate in (path, outbox.dead / path.name):
        if candidate.exists():
            return webhooks.Delivery.model_validate_json(candidate.read_text())
    return None


def test_rebinding_after_the_check_never_reaches_the_internal_host(
    tmp_path: Path, servers: tuple[LoggingServer, LoggingServer], fake_dns: Any
) -> None:
    public, internal = servers
    dns = fake_dns([PUBLIC_IP], [INTERNAL_IP])
    left = deliver_callback(hook_settings(tmp_path), f"http://{HOST}:{public.port}/hooks")
    assert left is None, left and left.last_error
    assert internal.requests == []
    [request] = public.requests
    assert request.path == "/hooks"
    assert request.headers["Host"] == f"{HOST}:{public.port}"
    assert verify_signature(SECRET, request.headers["Recast-Signature"], request.body)
    assert dns.lookups == [HOST], "looked up once, by the policy"


@pytest.mark.parametrize("answers", [[INTERNAL_IP], [PUBLIC_IP, INTERNAL_IP]])
def test_a_host_with_any_private_answer_is_refused_and_nothing_is_sent(
    tmp_path: Path,
    servers: tuple[LoggingServer, LoggingServer],
    fake_dns: Any,
    answers: list[str],
) -> None:
    public, internal = servers
    fake_dns(answers, answers)
    settings = hook_settings(tmp_path)
    left = deliver_callback(settings, f"http://{HOST}:{public.port}/hooks")
    assert left is not None and left.last_error.startswith("refused:")
    assert INTERNAL_IP in left.last_error
    assert public.requests == [] and internal.requests == []
    assert list(webhooks.Outbox.for_settings(settings).dead.glob("*.json")), "a dead letter"


def test_a_redirect_is_not_followed(
    tmp_path: Path, servers: tuple[LoggingServer, LoggingServer], fake_dns: Any
) -> None:
    public, internal = servers
    public.status, public.location = 307, f"http://{INTERNAL_IP}:{internal.port}/steal"
    fake_dns([PUBLIC_IP], [PUBLIC_IP])
    left = deliver_callback(hook_settings(tmp_path), f"http://{HOST}:{public.port}/hooks")
    assert left is not None and left.last_error == "HTTP 307"
    assert len(public.requests) == 1 and internal.requests == []


def test_the_backend_connects_to_its_own_origin_only() -> None:
    checked = [CheckedAddress(socket.AF_INET, PUBLIC_IP, 9)]
    backend = webhooks.PinnedBackend("Hooks.Example.Test", 9, checked)
    with pytest.raises(httpcore.ConnectError, match="not the checked"):
        backend.connect_tcp("other.example.test", 9)
    with pytest.raises(httpcore.ConnectError, match="not the checked"):
        backend.connect_tcp(HOST, 10)


# -- https: SNI and the certificate check keep the host name ----------------------------------


@dataclass
class Pki:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a server certificate for ``HOST`` only (no IP address in it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        name: str, key: Any, issuer: x509.Name, signer: Any, extensions: list[Any]
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Recast test CA")])
    ca = certificate(
        "Recast test CA",
        ca_key,
        ca_name,
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(
        HOST,
        key,
        ca_name,
        ca_key,
        [
            (x509.SubjectAlternativeName([x509.DNSName(HOST)]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "leaf.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return Pki(folder / "ca.pem", context)


@pytest.fixture
def tls_server(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoggingServer]:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))  # httpx trusts the test CA
    server = LoggingServer(PUBLIC_IP, tls=pki.server_context).start()
    yield server
    server.stop()


def test_https_to_the_pinned_address_keeps_sni_and_the_certificate_check(
    tmp_path: Path, tls_server: LoggingServer, fake_dns: Any
) -> None:
    dns = fake_dns([PUBLIC_IP], [INTERNAL_IP])
    left = deliver_callback(hook_settings(tmp_path), f"https://{HOST}:{tls_server.port}/hooks")
    assert left is None, left and left.last_error
    [request] = tls_server.requests
    assert tls_server.server_names == [HOST]
    assert request.headers["Host"] == f"{HOST}:{tls_server.port}"
    assert verify_signature(SECRET, request.headers["Recast-Signature"], request.body)
    assert dns.lookups == [HOST]


def test_https_certificate_is_checked_against_the_url_host_not_the_address(
    tls_server: LoggingServer, fake_dns: Any
) -> None:
    fake_dns([PUBLIC_IP], [PUBLIC_IP])
    policy = UrlPolicy.from_networks([f"{PUBLIC_IP}/32"])
    url = f"https://impostor.example.test:{tls_server.port}/hooks"
    with (
        webhooks.pinned_client(url, policy, 2.0) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.post(url, content=b"{}")
    assert tls_server.requests == []
    assert tls_server.server_names == ["impostor.example.test"]
