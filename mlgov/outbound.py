"""The one outbound policy: every request the server makes (predict URLs, webhooks, retraining triggers)
goes through here.

Why one place: a URL supplied by a user makes the server a proxy into its own network (databases on
127.0.0.1, the cloud metadata service on 169.254.169.254, private services). The policy

- resolves the host once, refuses loopback, link-local, private, unique-local, CGNAT, multicast,
  unspecified and reserved addresses (anything not globally routable) unless the operator allows the
  hostname or a CIDR in ``MLGOV_OUTBOUND_ALLOW``;
- connects to exactly the address it validated (the request URL is rewritten to the IP, the Host header
  and TLS SNI/certificate check keep the original name), so DNS rebinding between check and connect
  cannot redirect the request;
- follows no redirects (a 3xx is reported as an error: a redirect could point anywhere);
- bounds time (connect/read timeouts and an overall deadline) and size (the body is streamed and
  reading stops past a limit);
- never puts the remote body into an error: errors say what failed (refused address, timeout, HTTP
  status, oversize) and how to fix it.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpcore
import httpx
from fastapi import Depends, Request

from mlgov.errors import Invalid
from mlgov.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOW_FIX = ("point it at a publicly routable address, or let the operator allow this host with "
             "MLGOV_OUTBOUND_ALLOW (comma-separated hostnames and CIDRs, e.g. 'hooks.internal,10.1.0.0/16')")


class OutboundRefused(Invalid):
    """The URL is not one the server may call (scheme, unresolvable host, or a refused address)."""

    title = "Outbound request refused"


class RemoteCallFailed(Invalid):
    """The remote end was reachable under the policy but the call failed (timeout, status, size, shape)."""

    title = "Remote call failed"


def _parsed(url: str | httpx.URL) -> httpx.URL | None:
    try:
        return httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return None


def _origin(u: httpx.URL) -> str:
    """``host[:port]`` with an IPv6 host bracketed, as a URL writes it."""
    host = f"[{u.host}]" if ":" in u.host else u.host
    return host + (f":{u.port}" if u.port else "")


def safe_url(url: str | httpx.URL) -> str:
    """The URL without credentials or query string, fit to appear in errors and logs."""
    u = _parsed(url)
    return "<invalid URL>" if u is None else f"{u.scheme}://{_origin(u)}{u.path}"


def masked_url(url: str) -> str:
    """The URL as reads show it: its user name and every query parameter's name kept (so it can be recognised),
    the password and query values as ``***`` (tokens often travel there: ``?token=``, ``?sig=``). A secret in the
    path itself (a Slack-style hook) cannot be told apart; give such secrets as the webhook's ``secret``."""
    u = _parsed(url)
    if u is None:
        return "<invalid URL>"
    user = (u.username + (":***" if u.password else "") + "@") if u.username or u.password else ""
    query = "&".join(f"{k}=***" if v else k for k, v in u.params.multi_items())
    return f"{u.scheme}://{user}{_origin(u)}{u.path}" + (f"?{query}" if query else "")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _category(ip: IPAddress) -> str | None:
    """Why an address is refused by default, or None when it is publicly routable."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: mapped, 6to4, Teredo (client), NAT64
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _category(embedded)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (includes the cloud metadata address 169.254.169.254)"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("fc00::/7"):
        return "unique-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


OutboundClient = httpx.Client   # only ever made by `OutboundPolicy.client`: every request checked and pinned


@dataclass(frozen=True)
class Reply:
    """A bounded reply: status, headers and at most ``max_bytes`` of body."""

    status_code: int
    headers: httpx.Headers
    content: bytes


@dataclass
class OutboundPolicy:
    """Checks and performs outbound HTTP requests (see module docstring)."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_response_bytes: int = 16 * 1024 * 1024
    verify: ssl.SSLContext | bool = True   # TLS trust: default CAs (SSL_CERT_FILE/SSL_CERT_DIR are honoured)
    _resolve: Any = field(default=None, repr=False)   # tests may substitute a resolver (hostname → addresses)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        hosts, nets = parse_allow(settings.outbound_allow)
        return cls(allow_hosts=hosts, allow_networks=nets, connect_timeout_s=settings.outbound_connect_timeout_s,
                   read_timeout_s=settings.outbound_read_timeout_s,
                   max_response_bytes=settings.outbound_max_response_bytes)

    # --- checking -------------------------------------------------------------------------------------

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        if self._resolve is not None:
            return [ipaddress.ip_address(a) for a in self._resolve(host)]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise OutboundRefused(f"the host {host!r} does not resolve",
                                  fix="check the hostname; the server resolves it with its own DNS") from None
        out: list[IPAddress] = []
        for info in infos:
            addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if addr not in out:
                out.append(addr)
        return out

    def _allowed(self, host: str, ip: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.allow_hosts:
            return True
        cmp = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        return any(cmp.version == n.version and cmp in n for n in self.allow_networks)

    def check_url(self, url: str, purpose: str = "URL") -> IPAddress:
        """Validate ``url`` and return the one address a request to it must connect to.

        Every resolved address must pass (a name with one public and one private record is refused), so the
        pinned address is always one that was checked."""
        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise OutboundRefused(f"the {purpose} is not a valid URL", fix="give an absolute http(s) URL") from None
        if u.scheme not in ("http", "https") or not u.host:
            raise OutboundRefused(f"the {purpose} {safe_url(url)!r} is not an absolute http(s) URL",
                                  fix="give an absolute http:// or https:// URL")
        host = u.host
        port = u.port or (443 if u.scheme == "https" else 80)
        addrs = self.resolve(host, port)
        if not addrs:
            raise OutboundRefused(f"the host {host!r} of the {purpose} has no address", fix="check the hostname")
        for ip in addrs:
            why = _category(ip)
            if why is not None and not self._allowed(host, ip):
                shown = host if host == str(ip) else f"{host} ({ip})"
                raise OutboundRefused(
                    f"the {purpose} {safe_url(url)} resolves to {shown}, a {why} address, which the outbound "
                    "policy refuses", fix=ALLOW_FIX, refused_address=str(ip))
        return addrs[0]

    # --- sending --------------------------------------------------------------------------------------

    def client(self, read_timeout_s: float | None = None) -> OutboundClient:
        """An httpx client whose every request is checked and pinned; no redirects, no proxies from env."""
        timeout = httpx.Timeout(read_timeout_s or self.read_timeout_s, connect=self.connect_timeout_s)
        return httpx.Client(transport=PinnedTransport(self), timeout=timeout, follow_redirects=False,
                            trust_env=False)

    def post(self, url: str, content: bytes, headers: dict[str, str], *, purpose: str = "URL",
             client: httpx.Client | None = None, read_timeout_s: float | None = None,
             max_bytes: int | None = None) -> Reply:
        """POST under the policy; any status is returned (callers judge it) except redirects, which are errors.
        ``max_bytes=0`` reads no body at all.

        Raises OutboundRefused or RemoteCallFailed, whose messages never contain the remote body."""
        limit = self.max_response_bytes if max_bytes is None else max_bytes
        read_s = read_timeout_s or self.read_timeout_s
        deadline = time.monotonic() + self.connect_timeout_s + 2 * read_s
        own = client is None
        http = client or self.client(read_s)
        where = safe_url(url)
        token = _DEADLINE.set(deadline)   # every socket read and write of this call stops at the deadline
        try:
            with http.stream("POST", url, content=content, headers=headers) as r:
                if 300 <= r.status_code < 400:
                    raise RemoteCallFailed(
                        f"the {purpose} {where} answered HTTP {r.status_code} (a redirect); mlgov follows no "
                        "redirects", fix="give the final URL the redirect points to (it is checked by the same "
                        "outbound policy)", status_code=r.status_code)
                if limit == 0:   # the caller needs only the status (webhooks): the body is never read
                    return Reply(r.status_code, r.headers, b"")
                chunks: list[bytes] = []
                size = 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise RemoteCallFailed(
                            f"the {purpose} {where} answered more than {limit} bytes; reading stopped",
                            fix="make the receiver answer briefly (or raise MLGOV_OUTBOUND_MAX_RESPONSE_BYTES)")
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("overall deadline passed")
                    chunks.append(chunk)
                return Reply(r.status_code, r.headers, b"".join(chunks))
        except httpx.TimeoutException:
            raise RemoteCallFailed(
                f"the {purpose} {where} did not answer in time (connect {self.connect_timeout_s:g} s, "
                f"read {read_s:g} s)", fix="check the receiver is up and answers promptly "
                "(MLGOV_OUTBOUND_READ_TIMEOUT_S sets the limit)") from None
        except httpx.HTTPError as exc:
            raise RemoteCallFailed(
                f"the {purpose} {where} could not be reached ({type(exc).__name__})",
                fix="check the URL, that the receiver is listening, and that it speaks HTTP") from None
        finally:
            _DEADLINE.reset(token)
            if own:
                http.close()


# The overall deadline of the current outbound call. httpx's read timeout applies to each socket read, so a
# receiver trickling one header line at a time could hold a call (and the single webhook dispatcher thread)
# forever; the network backend below caps every read and write at what is left of the call's deadline.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("mlgov_outbound_deadline", default=None)


def _left(timeout: float | None, deadline: float, error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the outbound call's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self.inner, self.deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(timeout, self.deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(timeout, self.deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self.inner.start_tls(ssl_context, server_hostname, _left(timeout, self.deadline, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Connections opened during an outbound call inherit its deadline (keep-alive is off, so a connection
    never outlives the call that opened it)."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        deadline = _DEADLINE.get()
        if deadline is None:
            return self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        stream = self.inner.connect_tcp(host, port, _left(timeout, deadline, httpcore.ConnectTimeout),
                                        local_address, socket_options)
        return _DeadlineStream(stream, deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return self.inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class PinnedTransport(httpx.BaseTransport):
    """Checks every request's host under the policy and connects to the validated address only.

    The request URL is rewritten to the IP; the Host header (set by httpx from the original URL) and the TLS
    server name (``sni_hostname``, also used for certificate verification) keep the original name."""

    def __init__(self, policy: OutboundPolicy, inner: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        # trust_env here only reads SSL_CERT_FILE/SSL_CERT_DIR; proxies from the environment are off in the client
        # No keep-alive: the pool is keyed by (scheme, IP, port), so a kept TLS connection verified for one
        # hostname would be reused for another name on the same address without checking its certificate.
        if inner is None:
            inner = httpx.HTTPTransport(retries=0, verify=policy.verify, trust_env=True,
                                        limits=httpx.Limits(max_keepalive_connections=0))
            # httpx offers no public hook for the network backend; its pool's is replaced so every socket
            # operation honours the call's overall deadline (tests/test_outbound.py proves it on a trickling
            # receiver, so an httpx change that drops this attribute fails there).
            inner._pool._network_backend = _DeadlineBackend()
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        ip = self.policy.check_url(str(request.url))
        host = request.url.host
        if host != str(ip):
            request.url = request.url.copy_with(host=str(ip))
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def parse_allow(value: str | Iterable[str] | None) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """``MLGOV_OUTBOUND_ALLOW``: hostnames and CIDRs (a bare IP is a /32 or /128)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    hosts: set[str] = set()
    nets: list[IPNetwork] = []
    for raw in items:
        item = raw.strip().strip("[]")
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower().rstrip("."))
    return frozenset(hosts), tuple(nets)


def get_policy(request: Request) -> OutboundPolicy:
    policy: OutboundPolicy = request.app.state.outbound
    return policy


OutboundDep = Annotated[OutboundPolicy, Depends(get_policy)]
