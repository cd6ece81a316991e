"""Fetching images from URLs: real HTTP(S) servers on 127.0.0.1, and every way a URL is refused.

The servers count the requests they see, so "refused" always means "refused before any request".
"""

from __future__ import annotations

import datetime
import gzip
import io
import ipaddress
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from moderate import Budgets, MediaError
from moderate.media import fetch as fetch_module
from moderate.media.fetch import FetchLimits, fetch, is_url
from moderate.media import decode

ALLOW = ("127.0.0.1",)


def _png() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        if path == "/img.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif path == "/notype":
            self._send(200, PNG, {})
        elif path == "/jpeg-params":
            self._send(200, PNG, {"Content-Type": "Image/JPEG; charset=binary"})
        elif path == "/html":
            self._send(200, b"<html>hi</html>", {"Content-Type": "text/html; charset=utf-8"})
        elif path == "/svg":
            self._send(200, b"<svg/>", {"Content-Type": "image/svg+xml"})
        elif path == "/gzip":
            self._send(200, gzip.compress(PNG), {"Content-Type": "image/png", "Content-Encoding": "gzip"})
        elif path == "/missing":
            self._send(404, b"nope", {"Content-Type": "text/plain"})
        elif path == "/redirect":
            self._send(int(query.get("status", ["302"])[0]), b"", {"Location": query["to"][0]})
        elif path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif path.startswith("/chain/"):
            self._send(302, b"", {"Location": f"/chain/{int(path.split('/')[2]) + 1}"})
        elif path == "/chunked":  # no Content-Length: only counting the bytes can stop it
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._quietly(lambda: [self.wfile.write(b"%x\r\n%s\r\n" % (8192, b"\0" * 8192)) for _ in range(64)])
        elif path == "/close-delimited":  # no Content-Length, no chunking: the body ends when the socket does
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._quietly(lambda: self.wfile.write(b"\0" * 500_000))
        elif path == "/drip":  # an honest, small Content-Length, one byte a second
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "60")
            self.end_headers()
            self._quietly(self._drip)
        elif path == "/stall":  # headers, then silence
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "60")
            self.end_headers()
            self.wfile.flush()
            self.server.stop.wait(3)
            self.close_connection = True
        else:
            self._send(500, b"unknown test path", {})

    def _drip(self):
        for _ in range(60):
            self.wfile.write(b"\0")
            self.wfile.flush()
            if self.server.stop.wait(1.0):
                return

    def _send(self, status: int, body: bytes, headers: dict[str, str]):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _quietly(self, write):
        try:
            write()
        except OSError:  # the client hung up, as it should
            self.close_connection = True


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up mid-body is expected here
            super().handle_error(request, client_address)


class Server:
    """A real ThreadingHTTPServer on 127.0.0.1 (TLS-wrapped with `tls`), in a daemon thread."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.requests = []
        self.httpd.stop = threading.Event()
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self):
        self.httpd.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _server():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def server(_server) -> Server:
    _server.requests.clear()
    return _server


@pytest.fixture
def no_connect(monkeypatch) -> list:
    """Fails any attempt to open a TCP connection (records it), to prove refusals happen first."""
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def dns(monkeypatch) -> dict:
    """A fake resolver for `*.test` names: table[name] is a list of IPs or a callable(call_number);
    `calls[name]` counts lookups. Other names go to the real resolver."""
    real = socket.getaddrinfo
    table: dict = {}
    calls: dict = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            return real(host, port, *args, **kwargs)
        calls[host] = calls.get(host, 0) + 1
        entry = table[host]
        answer = entry(calls[host]) if callable(entry) else entry
        out = []
        for item in answer:
            ip, to_port = item if isinstance(item, tuple) else (item, port)
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, to_port, 0, 0) if family == socket.AF_INET6 else (ip, to_port)
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    table["__calls__"] = calls
    return table


def refused(url: str, code: str, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as info:
        fetch(url, kwargs.pop("budgets", Budgets()), **kwargs)
    assert info.value.code == code, str(info.value)
    assert "\n" not in str(info.value)
    return info.value


# -- success ------------------------------------------------------------------------------------


def test_fetches_an_allowed_host_and_the_bytes_decode(server):
    data = fetch(server.url("/img.png"), Budgets(), allow_hosts=ALLOW)
    assert data == PNG
    assert decode(data).format == "PNG"
    ((path, headers),) = server.requests
    assert path == "/img.png"
    assert headers["Accept-Encoding"] == "identity"
    assert headers["Host"] == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize("allow", [("127.0.0.0/8",), ("127.0.0.1", "other.example"), "127.0.0.1"])
def test_allow_list_takes_cidrs_and_several_entries(server, allow):
    assert fetch(server.url("/img.png"), Budgets(), allow_hosts=allow) == PNG


def test_allow_list_by_name_tries_each_address(server):
    # localhost may resolve to ::1 first, where nothing listens: the next checked address is tried.
    assert fetch(server.url("/img.png", "localhost"), Budgets(), allow_hosts=("localhost",)) == PNG


def test_missing_content_type_is_octet_stream_and_parameters_are_ignored(server):
    assert fetch(server.url("/notype"), Budgets(), allow_hosts=ALLOW) == PNG
    assert fetch(server.url("/jpeg-params"), Budgets(), allow_hosts=ALLOW) == PNG


def test_follows_a_redirect_to_an_allowed_address(server):
    data = fetch(server.url("/redirect?to=/img.png&status=301"), Budgets(), allow_hosts=ALLOW)
    assert data == PNG
    assert [p for p, _ in server.requests] == ["/redirect?to=/img.png&status=301", "/img.png"]


def test_connects_to_the_checked_address_without_a_second_lookup(server, dns):
    """DNS rebinding: the first answer is allowed, later answers point at an internal service."""
    internal = Server()
    try:
        dns["rebind.test"] = lambda n: ["127.0.0.1"] if n == 1 else [("127.0.0.1", internal.port)]
        data = fetch(server.url("/img.png", "rebind.test"), Budgets(), allow_hosts=ALLOW)
        assert data == PNG
        assert dns["__calls__"]["rebind.test"] == 1
        assert internal.requests == []
        ((_, headers),) = server.requests
        assert headers["Host"] == f"rebind.test:{server.port}"  # the real name, not the address
    finally:
        internal.close()


# -- https: SNI and certificate hostname use the real name while connecting to the pinned address ---


def _tls_files(folder, name: str):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moderate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / "ca.pem", folder / "chain.pem", folder / "key.pem"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    ca, chain, key = _tls_files(tmp_path_factory.mktemp("tls"), "images.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    seen_sni = []
    context.sni_callback = lambda sock, server_name, ctx: seen_sni.append(server_name)
    server = Server(tls=context)
    server.sni = seen_sni
    server.ca = ca
    yield server
    server.close()


@pytest.fixture
def https(tls_server, dns, monkeypatch):
    tls_server.requests.clear()
    tls_server.sni.clear()
    monkeypatch.setattr(fetch_module, "_ssl_context", lambda: ssl.create_default_context(cafile=str(tls_server.ca)))
    dns["images.test"] = ["127.0.0.1"]
    dns["evil.test"] = ["127.0.0.1"]
    return tls_server


def test_https_sends_sni_and_verifies_the_certificate_for_the_real_name(https):
    assert fetch(https.url("/img.png", "images.test"), Budgets(), allow_hosts=ALLOW) == PNG
    assert https.sni == ["images.test"]
    ((_, headers),) = https.requests
    assert headers["Host"] == f"images.test:{https.port}"


@pytest.mark.parametrize("host", ["evil.test", "127.0.0.1"])
def test_https_refuses_a_certificate_for_another_name(https, host):
    error = refused(https.url("/img.png", host), "url_unreachable", allow_hosts=ALLOW)
    assert "certificate" in error.detail
    assert https.requests == []


def test_https_default_context_verifies_hostnames():
    context = fetch_module._ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# -- refusals before any request ------------------------------------------------------------------


def test_without_the_allow_list_localhost_is_refused_before_any_request(server):
    error = refused(server.url("/img.png"), "url_blocked")
    assert "127.0.0.1" in error.detail and "loopback" in error.detail
    assert str(error).startswith(server.url("/img.png") + ": ")
    assert server.requests == []


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:{port}/img.png",
    "http://[::ffff:127.0.0.1]:{port}/img.png",
    "http://[::ffff:7f00:1]:{port}/img.png",
    "http://[::127.0.0.1]:{port}/img.png",  # IPv4-compatible
    "http://[64:ff9b::7f00:1]:{port}/img.png",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # NAT64 of 169.254.169.254
    "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
    "http://2130706433:{port}/img.png",
    "http://0x7f000001:{port}/img.png",
    "http://0x7f.1:{port}/img.png",
    "http://017700000001:{port}/img.png",
    "http://127.1:{port}/img.png",
    "http://127.0.0.1.:{port}/img.png",
    "http://localhost:{port}/img.png",
    "http://LocalHost:{port}/img.png",
    "http://0.0.0.0:{port}/img.png",
    "http://[::]:{port}/img.png",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
])
def test_ssrf_forms_are_blocked_before_any_connection(server, no_connect, url):
    refused(url.format(port=server.port), "url_blocked")
    assert no_connect == []
    assert server.requests == []


def test_a_name_resolving_to_any_internal_address_is_blocked(dns, no_connect):
    dns["mixed.test"] = ["93.184.216.34", "10.1.2.3"]  # one bad address is enough
    error = refused("http://mixed.test/x.png", "url_blocked")
    assert "mixed.test resolves to 10.1.2.3, which is private" in error.detail
    assert no_connect == []


def test_allow_list_does_not_widen_to_other_addresses_or_numeric_forms(server, no_connect):
    refused(server.url("/img.png", "127.0.0.2"), "url_blocked", allow_hosts=ALLOW)
    refused(server.url("/img.png", "2130706433"), "url_blocked", allow_hosts=ALLOW)
    refused(server.url("/img.png", "[::ffff:127.0.0.1]"), "url_blocked", allow_hosts=ALLOW)
    assert no_connect == [] and server.requests == []


@pytest.mark.parametrize("url, code", [
    ("ftp://example.com/x.png", "url_scheme"),
    ("file:///etc/passwd", "url_scheme"),
    ("gopher://127.0.0.1:6379/_INFO", "url_scheme"),
    ("http://user:secret@example.com/x.png", "url_credentials"),
    ("http://user@example.com/x.png", "url_credentials"),
    ("http:///x.png", "url_invalid"),
    ("http://exa%6dple.com/x.png", "url_invalid"),
    ("http://example.com:99999/x.png", "url_invalid"),
    ("http://[fe80::1%25eth0]/", "url_invalid"),
    ("http://1.2.3.4.5/", "url_blocked"),
])
def test_bad_urls_are_refused_with_their_code(no_connect, url, code):
    error = refused(url, code)
    assert "secret" not in str(error)  # credentials never reach messages or logs
    assert no_connect == []


# -- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", [
    "http://169.254.169.254/latest/meta-data",
    "http://127.0.0.2:{port}/img.png",
    "http://[::ffff:127.0.0.1]:{port}/img.png",
    "http://2130706433:{port}/img.png",
])
def test_redirect_to_a_blocked_address_is_refused_without_the_second_request(server, to):
    error = refused(server.url(f"/redirect?to={to.format(port=server.port)}"), "url_blocked", allow_hosts=ALLOW)
    assert error.detail.startswith("redirect to ")
    assert len(server.requests) == 1


@pytest.mark.parametrize("to, code", [
    ("ftp://127.0.0.1/x.png", "url_scheme"),
    ("file:///etc/passwd", "url_scheme"),
    ("http://user:pw@127.0.0.1/x.png", "url_credentials"),
])
def test_redirect_to_a_bad_url_is_refused(server, to, code):
    refused(server.url(f"/redirect?to={to}"), code, allow_hosts=ALLOW)
    assert len(server.requests) == 1


def test_redirect_loop_is_refused(server):
    error = refused(server.url("/loop"), "url_redirects", allow_hosts=ALLOW)
    assert "loop" in error.detail
    assert len(server.requests) == 1


def test_more_than_five_redirects_are_refused(server):
    error = refused(server.url("/chain/0"), "url_redirects", allow_hosts=ALLOW)
    assert "more than 5 redirects" in error.detail
    assert len(server.requests) == 6  # the first request and five redirects, no seventh
    server.requests.clear()
    refused(server.url("/chain/0"), "url_redirects", allow_hosts=ALLOW, limits=FetchLimits(max_redirects=1))
    assert len(server.requests) == 2


# -- bombs, types, statuses -----------------------------------------------------------------------


def test_honest_content_length_over_budget_is_refused_before_the_body(server):
    error = refused(server.url("/img.png"), "url_too_large", allow_hosts=ALLOW, budgets=Budgets(max_bytes=len(PNG) - 1))
    assert f"Content-Length is {len(PNG)} bytes" in error.detail
    assert fetch(server.url("/img.png"), Budgets(max_bytes=len(PNG)), allow_hosts=ALLOW) == PNG


@pytest.mark.parametrize("path", ["/chunked", "/close-delimited"])
def test_body_without_content_length_is_cut_at_the_budget(server, path):
    error = refused(server.url(path), "url_too_large", allow_hosts=ALLOW, budgets=Budgets(max_bytes=20_000))
    assert "stopped reading" in error.detail


def test_gzip_content_encoding_is_refused(server):
    error = refused(server.url("/gzip"), "url_encoding", allow_hosts=ALLOW)
    assert "gzip" in error.detail


@pytest.mark.parametrize("path", ["/html", "/svg"])
def test_non_image_content_type_is_refused(server, path):
    refused(server.url(path), "url_content_type", allow_hosts=ALLOW)


def test_non_2xx_status_is_refused(server):
    error = refused(server.url("/missing"), "url_status", allow_hosts=ALLOW)
    assert "404" in error.detail


# -- time and reachability ------------------------------------------------------------------------


def test_slow_drip_is_cut_off_at_the_total_deadline(server):
    start = time.monotonic()
    error = refused(server.url("/drip"), "url_timeout", allow_hosts=ALLOW, limits=FetchLimits(total=2.0))
    elapsed = time.monotonic() - start
    assert "total deadline of 2 s" in error.detail
    assert 1.8 <= elapsed < 3.0, elapsed


def test_silence_is_cut_off_by_the_read_timeout(server):
    start = time.monotonic()
    error = refused(server.url("/stall"), "url_timeout", allow_hosts=ALLOW, limits=FetchLimits(read=0.5))
    assert "no data" in error.detail
    assert time.monotonic() - start < 2.0


def test_slow_dns_is_cut_off_by_the_connect_timeout(dns):
    dns["slow.test"] = lambda n: time.sleep(2) or ["93.184.216.34"]
    start = time.monotonic()
    refused("http://slow.test/x.png", "url_timeout", limits=FetchLimits(connect=0.3))
    assert time.monotonic() - start < 1.0


def test_dns_failure_is_unreachable(dns):
    def fail(n):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    dns["nxdomain.test"] = fail
    error = refused("http://nxdomain.test/x.png", "url_unreachable")
    assert "cannot resolve nxdomain.test" in error.detail


def test_connection_refused_is_unreachable():
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = refused(f"http://127.0.0.1:{port}/x.png", "url_unreachable", allow_hosts=ALLOW)
    assert "cannot connect" in error.detail


# -- pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808",
                                     "::ffff:8.8.8.8", "2002:808:808::1"])
def test_public_addresses_are_not_blocked(address):
    assert fetch_module._why_blocked(ipaddress.ip_address(address)) is None


def test_is_url():
    assert is_url("https://example.com/x.png") and is_url("HTTP://example.com") and is_url("ftp://x/y")
    assert not is_url("photos/x.png") and not is_url("-") and not is_url("C://x.png") and not is_url("x.png")


def test_limits_are_validated():
    with pytest.raises(ValueError):
        FetchLimits(total=0)


def test_importing_the_module_does_not_import_httpx():
    code = "import sys, moderate.media.fetch; sys.exit('httpx' in sys.modules or 'httpcore' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
