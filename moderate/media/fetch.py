"""Fetching an image from an http(s) URL without letting the URL fetch something else.

A URL to check comes from an untrusted user, and the fetch runs inside our network. Left alone, an
HTTP client is a server-side request forgery (SSRF) tool: `http://169.254.169.254/latest/meta-data`
reads cloud credentials, `http://localhost:6379/` talks to internal services, and the same targets
hide behind redirects, DNS names, `[::ffff:127.0.0.1]`, `http://2130706433/` or NAT64 prefixes. So:

- Only http and https, no `user:password@` in URLs; integer, octal, hex and short IPv4 forms
  (`2130706433`, `0x7f.1`, `127.1`) are refused outright: no legitimate image URL uses them, and
  resolvers disagree on what they mean.
- The host is resolved once and EVERY address is checked (`_why_blocked`): loopback, private,
  link-local (cloud metadata), multicast, unspecified, reserved, shared (100.64/10), and IPv6 forms
  that embed such an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo). `allow_hosts` (names,
  IPs or CIDRs) lets named internal addresses through.
- The connection goes to the address that was checked, never to a second resolution of the name:
  otherwise a DNS server answering with a short TTL passes the check with a public address and then
  "rebinds" the name to 127.0.0.1 for the actual connection. This is done below the HTTP layer: a
  network backend for httpcore that ignores the host name it is asked to connect to and connects to
  the pinned addresses. The URL keeps the real name, so the `Host` header, TLS SNI and certificate
  hostname verification all use it, through the standard code path.
- Redirects are followed by hand (at most `max_redirects`), and every hop is checked like the first.
- Bombs: a byte cap on the declared Content-Length and on the bytes actually read (chunked or
  close-delimited bodies can lie), `Accept-Encoding: identity` and a refusal of any other
  Content-Encoding (a 40 kB gzip body can inflate to gigabytes), and a content-type allow-list.
- Time: connect and read timeouts per operation, and a total deadline for the whole fetch (DNS,
  every hop, every read) enforced on each socket operation, so a server dripping one byte a second
  is cut off at the deadline, not after `read` seconds of silence that never come.
- Environment proxies are ignored (`trust_env=False`): a proxy would make the address checks moot.

Every refusal raises `MediaError(url, code, detail)` with a stable code (`url_blocked`,
`url_scheme`, `url_credentials`, `url_invalid`, `url_too_large`, `url_timeout`, `url_content_type`,
`url_encoding`, `url_redirects`, `url_unreachable`, `url_status`). httpx is imported on first use.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Union

from ..errors import MediaError
from . import Budgets

if TYPE_CHECKING:
    import httpx

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class FetchLimits:
    """Timeouts (seconds) and redirect limit of one fetch."""

    connect: float = 5.0  # DNS and TCP/TLS connect, per attempt
    read: float = 10.0  # longest silence while reading
    total: float = 30.0  # the whole fetch, all hops included
    max_redirects: int = 5

    def __post_init__(self):
        for field in ("connect", "read", "total"):
            if not getattr(self, field) > 0:
                raise ValueError(f"FetchLimits.{field} must be positive, got {getattr(self, field)!r}")
        if self.max_redirects < 0:
            raise ValueError(f"FetchLimits.max_redirects must be >= 0, got {self.max_redirects!r}")


# Routing is by content later (Pillow sniffs magic bytes); this only keeps web pages, scripts and
# the like from being fetched at all. SVG is deliberately absent (XML with scripts and entities).
CONTENT_TYPES = frozenset({
    "image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/x-png", "image/gif", "image/webp",
    "image/bmp", "image/x-bmp", "image/x-ms-bmp", "image/tiff", "image/heic", "image/heic-sequence",
    "image/heif", "image/heif-sequence", "image/avif", "image/wmf", "image/x-wmf", "image/emf",
    "image/x-emf", "application/pdf", "application/octet-stream",
})
REDIRECTS = (301, 302, 303, 307, 308)
HEADERS = {
    "Accept": "image/*, application/pdf, application/octet-stream;q=0.5",
    "Accept-Encoding": "identity",
    "User-Agent": "moderate-fetch/1",
}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")  # 2+ letters: never a Windows drive (C://x)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_HOST_NAME = re.compile(r"(?:[a-z0-9_-]+\.)*[a-z0-9_-]+\.?")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_DOTTED_QUAD = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: neither private nor global
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: the low 32 bits are IPv4
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


def is_url(text: str) -> bool:
    """Whether an input names a URL rather than a file: anything shaped `scheme://`, so that
    `ftp://...` or `file://...` gets a clear `url_scheme` refusal instead of "no such file"."""
    return isinstance(text, str) and _SCHEME.match(text) is not None


def fetch(url: str, budgets: Budgets, limits: FetchLimits = FetchLimits(),
          allow_hosts: tuple[str, ...] = ()) -> bytes:
    """The body of `url`, within `budgets.max_bytes` and `limits`, or a `MediaError` naming the URL.

    `allow_hosts`: host names (exact, case-insensitive) whose addresses are all allowed, and IP
    addresses or CIDR networks allowed even if internal, e.g. `("127.0.0.1", "images.corp")`.
    """
    name = _redact(url)
    deadline = time.monotonic() + limits.total
    names, networks = _allow_list(allow_hosts)
    current, hop, seen = url, "", set()
    for redirects in range(limits.max_redirects + 1):
        target = _Target.parse(current, name, hop)
        seen.add(str(target.url))
        addresses = _addresses(target, limits, deadline, name, hop)
        if target.host.rstrip(".") not in names:
            for address in addresses:
                why = None if any(address in net for net in networks) else _why_blocked(address)
                if why:
                    what = f"address {address}" if target.literal else f"{target.host} resolves to {address}, which"
                    raise MediaError(name, "url_blocked", f"{hop}{what} is {why}")
        location = _get(target, addresses, budgets, limits, deadline, name, hop)
        if isinstance(location, bytes):
            return location
        if redirects == limits.max_redirects:
            raise MediaError(name, "url_redirects", f"more than {limits.max_redirects} redirects (the last to {_redact(location)})")
        if location in seen:
            raise MediaError(name, "url_redirects", f"redirect loop: {_redact(location)} was already visited")
        current, hop = location, f"redirect to {_redact(location)}: "
    raise AssertionError("unreachable")  # pragma: no cover


# -- URLs and addresses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: "httpx.URL"
    host: str  # ASCII (IDNA), lower case, no brackets
    port: int
    literal: bool  # the host is an IP address

    @classmethod
    def parse(cls, text: str, name: str, hop: str) -> "_Target":
        import httpx

        try:
            url = httpx.URL(text)
            host = url.raw_host.decode("ascii").lower()
        except (httpx.InvalidURL, TypeError, ValueError, UnicodeError) as exc:
            raise MediaError(name, "url_invalid", f"{hop}not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https"):
            raise MediaError(name, "url_scheme", f"{hop}only http and https URLs can be fetched, not {url.scheme or 'no scheme'!r}")
        if url.userinfo:
            raise MediaError(name, "url_credentials", f"{hop}credentials in URLs (user:password@host) are refused")
        if not host:
            raise MediaError(name, "url_invalid", f"{hop}the URL has no host")
        port = url.port or (443 if url.scheme == "https" else 80)
        if not 0 < port < 65536:
            raise MediaError(name, "url_invalid", f"{hop}port {port} is out of range")
        if ":" in host:  # IPv6 literal
            try:
                if "%" in host:
                    raise ValueError("zone identifiers are not allowed")
                ipaddress.IPv6Address(host)
            except ValueError as exc:
                raise MediaError(name, "url_invalid", f"{hop}bad IPv6 address {host!r}: {exc}") from None
            return cls(url, host, port, True)
        if not _HOST_NAME.fullmatch(host):
            raise MediaError(name, "url_invalid", f"{hop}bad host name {host!r}")
        last = host.rstrip(".").rsplit(".", 1)[-1]
        if _NUMERIC_LABEL.fullmatch(last):  # an IPv4 address, in the URL standard's reading
            bare = host.rstrip(".")
            if _DOTTED_QUAD.fullmatch(bare):
                return cls(url, bare, port, True)
            try:
                means = f" (= {socket.inet_ntoa(socket.inet_aton(bare))})"
            except OSError:
                means = ""
            raise MediaError(name, "url_blocked", f"{hop}host {bare!r} is a non-canonical numeric IPv4 form{means}; "
                             "only dotted-quad addresses are accepted")
        return cls(url, host, port, False)


def _redact(url: str) -> str:
    """The URL for messages: credentials replaced by `***`."""
    return _USERINFO.sub(r"\1***@", url) if isinstance(url, str) else repr(url)


def _allow_list(entries: Iterable[str]) -> tuple[set[str], list[IPNetwork]]:
    if isinstance(entries, str):  # allow_hosts="127.0.0.1" would otherwise allow "1", "2", "7", ...
        entries = (entries,)
    names, networks = set(), []
    for entry in entries:
        entry = entry.strip().lower()
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            if entry:
                names.add(entry.rstrip("."))
    return names, networks


def _addresses(target: _Target, limits: FetchLimits, deadline: float, name: str, hop: str) -> list[IPAddress]:
    """The addresses to connect to: the literal, or every address the name resolves to, once."""
    if target.literal:
        return [ipaddress.ip_address(target.host)]
    timeout = min(limits.connect, deadline - time.monotonic())
    box: dict = {}
    done = threading.Event()

    def resolve():  # getaddrinfo has no timeout of its own
        try:
            box["infos"] = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=resolve, name="moderate-fetch-dns", daemon=True).start()
    if timeout <= 0 or not done.wait(timeout):
        if timeout < limits.connect:
            detail = f"the fetch took longer than its total deadline of {limits.total:g} s (resolving {target.host})"
        else:
            detail = f"resolving {target.host} took longer than {limits.connect:g} s"
        raise MediaError(name, "url_timeout", hop + detail)
    if "error" in box:
        raise MediaError(name, "url_unreachable", f"{hop}cannot resolve {target.host}: {box['error']}")
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in box["infos"]:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            raise MediaError(name, "url_blocked", f"{hop}{target.host} resolves to {sockaddr[0]!r}, not an IP address") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise MediaError(name, "url_unreachable", f"{hop}{target.host} has no IPv4 or IPv6 address")
    return addresses


def _why_blocked(address: IPAddress) -> str | None:
    """Why an address must not be fetched from, or None if it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = []
        if address.ipv4_mapped is not None:
            embedded.append(("IPv4-mapped", address.ipv4_mapped))
        elif address in _V4_COMPATIBLE and int(address) > 1:
            embedded.append(("IPv4-compatible", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
        elif address in _NAT64:
            embedded.append(("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)))
        if address.sixtofour is not None:
            embedded.append(("6to4", address.sixtofour))
        if address.teredo is not None:
            embedded += [("Teredo server", address.teredo[0]), ("Teredo client", address.teredo[1])]
        for form, v4 in embedded:
            why = _why_blocked(v4)
            if why:
                return f"the {form} form of {v4}, which is {why}"
        if address.ipv4_mapped is not None or address in _NAT64:
            # The embedded IPv4 address decides: Python calls all of ::ffff:0:0/96 private and all of
            # ::/8 (NAT64 included) reserved, which would block every host on an IPv6-only network.
            return None
        if address in _V4_COMPATIBLE and int(address) > 1:
            return "a deprecated IPv4-compatible IPv6 address"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address in _METADATA:
        return "the cloud metadata endpoint"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address in _SHARED:
        return "shared address space (carrier-grade NAT)"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if getattr(address, "is_site_local", False):
        return "site-local"
    if not address.is_global:
        return "not a public address"
    return None


# -- one request ----------------------------------------------------------------------------------


def _get(target: _Target, addresses: list[IPAddress], budgets: Budgets, limits: FetchLimits, deadline: float,
         name: str, hop: str) -> bytes | str:
    """GET one URL over a connection to `addresses`: the body, or the absolute URL a redirect names."""
    import httpcore
    import httpx

    backend = _PinnedBackend(target.host, addresses, deadline)
    pool = httpcore.ConnectionPool(ssl_context=_ssl_context() if target.url.scheme == "https" else None,
                                   max_connections=1, max_keepalive_connections=0, retries=0,
                                   network_backend=backend)
    timeout = httpx.Timeout(limits.read, connect=limits.connect)
    try:
        with httpx.Client(transport=_machinery()(pool), trust_env=False, follow_redirects=False,
                          timeout=timeout) as client, client.stream("GET", target.url, headers=HEADERS) as response:
            status = response.status_code
            if status in REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise MediaError(name, "url_status", f"{hop}HTTP {status} redirect without a Location")
                try:
                    return str(target.url.join(location.strip()).copy_with(fragment=None))
                except (httpx.InvalidURL, ValueError) as exc:
                    raise MediaError(name, "url_invalid", f"{hop}bad redirect Location {location!r}: {exc}") from None
            if not 200 <= status < 300:
                raise MediaError(name, "url_status", f"{hop}HTTP {status} {response.reason_phrase}".rstrip())
            _check_headers(response, budgets, name, hop)
            return _read_body(response, budgets, name, hop)
    except (httpcore.TimeoutException, httpx.TimeoutException) as exc:
        if backend.deadline_hit:
            detail = f"the fetch took longer than its total deadline of {limits.total:g} s"
        elif isinstance(exc, (httpcore.ConnectTimeout, httpx.ConnectTimeout)):
            detail = f"no connection to {target.host} within {limits.connect:g} s"
        else:
            detail = f"no data from {target.host} for {limits.read:g} s"
        raise MediaError(name, "url_timeout", hop + detail) from None
    except (httpcore.ConnectError, httpx.ConnectError) as exc:
        cause = _ssl_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = f"TLS certificate of {target.host} does not verify: {cause.verify_message or cause.reason}"
        elif cause is not None:
            detail = f"TLS handshake with {target.host} failed: {cause.reason or cause}"
        else:
            tried = ", ".join(str(a) for a in addresses)
            detail = f"cannot connect to {target.host} port {target.port} ({tried}): {exc or type(exc).__name__}"
        raise MediaError(name, "url_unreachable", hop + detail) from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpx.TransportError) as exc:
        raise MediaError(name, "url_unreachable", f"{hop}transfer from {target.host} failed: {exc or type(exc).__name__}") from None


def _check_headers(response: "httpx.Response", budgets: Budgets, name: str, hop: str) -> None:
    encodings = [e.strip().lower() for v in response.headers.get_list("content-encoding") for e in v.split(",")]
    refused = [e for e in encodings if e not in ("", "identity")]
    if refused:
        raise MediaError(name, "url_encoding", f"{hop}Content-Encoding {', '.join(refused)} is refused (only identity is accepted)")
    # No Content-Type: RFC 9110 lets a recipient assume application/octet-stream, which is allowed.
    content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if content_type not in CONTENT_TYPES:
        raise MediaError(name, "url_content_type", f"{hop}Content-Type {content_type or 'empty'!r} is not an image type")
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > budgets.max_bytes:
        raise MediaError(name, "url_too_large", f"{hop}Content-Length is {int(declared)} bytes, over the max_bytes budget of {budgets.max_bytes}")


def _read_body(response: "httpx.Response", budgets: Budgets, name: str, hop: str) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_raw():  # raw: nothing is ever decompressed
        size += len(chunk)
        if size > budgets.max_bytes:
            raise MediaError(name, "url_too_large", f"{hop}body is over the max_bytes budget of {budgets.max_bytes} bytes (stopped reading)")
        chunks.append(chunk)
    return b"".join(chunks)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """The system-independent default: certifi's roots, hostname checking on (loaded once)."""
    import httpx

    return httpx.create_ssl_context(verify=True, trust_env=False)


# -- connecting to the checked address ------------------------------------------------------------


class _PinnedBackend:
    """An httpcore network backend that connects only to the addresses already checked, whatever
    host name httpcore passes (it passes the URL's), and holds every socket operation to the
    deadline. Tried in order, like `socket.create_connection` does with a resolver's answer."""

    def __init__(self, host: str, addresses: list[IPAddress], deadline: float):
        import httpcore

        self._inner = httpcore.SyncBackend()
        self.host = host
        self.addresses = addresses
        self.deadline = deadline
        self.deadline_hit = False

    def clamp(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self.deadline - time.monotonic()
        if timeout is None or remaining < timeout:
            self.deadline_hit = True
            if remaining <= 0:
                raise error("total deadline reached")
            return remaining
        self.deadline_hit = False
        return timeout

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        import httpcore

        if host.lower().strip("[]") != self.host:  # httpcore connects for the URL we gave it, nothing else
            raise httpcore.ConnectError(f"refusing to connect to unexpected host {host!r}")
        failure: Exception = httpcore.ConnectError("no address")
        for address in self.addresses:
            try:
                stream = self._inner.connect_tcp(str(address), port, self.clamp(timeout, httpcore.ConnectTimeout),
                                                 local_address, socket_options)
                return _DeadlineStream(stream, self)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover
        raise NotImplementedError("unix sockets are never used for fetching")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - retries=0
        time.sleep(seconds)


class _DeadlineStream:
    """A network stream whose reads, writes and TLS handshake never wait past the deadline."""

    def __init__(self, inner, backend: _PinnedBackend):
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        return self._inner.read(max_bytes, self._backend.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        self._inner.write(buffer, self._backend.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        import httpcore

        # server_hostname is the URL's host: SNI and certificate verification use the real name.
        inner = self._inner.start_tls(ssl_context, server_hostname, self._backend.clamp(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._backend)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


@functools.cache
def _machinery():
    """The httpx transport over an httpcore pool (defined on first use: httpx is imported lazily).

    It is httpx's own `HTTPTransport.handle_request`, minus the pool construction, which httpx
    does not let us give a network backend to."""
    import httpx

    class Body(httpx.SyncByteStream):
        def __init__(self, stream):
            self._stream = stream

        def __iter__(self):
            yield from self._stream

        def close(self) -> None:
            if hasattr(self._stream, "close"):
                self._stream.close()

    class PinnedTransport(httpx.BaseTransport):
        def __init__(self, pool):
            self._pool = pool

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            import httpcore

            core = httpcore.Request(
                method=request.method,
                url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                                 port=request.url.port, target=request.url.raw_path),
                headers=request.headers.raw, content=request.stream, extensions=request.extensions,
            )
            response = self._pool.handle_request(core)
            return httpx.Response(status_code=response.status, headers=response.headers,
                                  stream=Body(response.stream), extensions=response.extensions)

        def close(self) -> None:
            self._pool.close()

    return PinnedTransport
