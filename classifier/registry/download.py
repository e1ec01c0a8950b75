"""``registry update``'s HTTP(S) client: an overall deadline, a size cap, every failure one line.

A socket timeout alone bounds only the wait for the next byte (a server sending one byte every 2 s
never trips it), so a watchdog shuts the connection down when the overall ``deadline`` passes, in any
phase (status line, headers, body). The body is read as it arrives and refused past ``MAX_BYTES``
(an endless body once reached 13.6 GB). Redirects are followed by hand (at most ``MAX_REDIRECTS``; a
loop is named in one line), proxies from the environment (``http_proxy``, ``https_proxy``,
``no_proxy``) are honoured, and an HTML page where the registry should be is named as such.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import RegistryError
from .files import MAX_BYTES, too_big
from .parse import looks_like_html

if TYPE_CHECKING:
    import http.client
    import socket

# http.client, socket and urllib are imported where a download happens: not on every run's start

DEADLINE = 120.0
"""Seconds the whole download may take (a real edition is about 4 MB)."""
STALL = 30.0
"""Seconds without a byte before the connection is given up."""
MAX_REDIRECTS = 5
_CHUNK = 64 << 10


def one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line, at most ``limit`` characters (server-supplied text can hold anything)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


Progress = Callable[[int, int | None], None]


def download(
    url: str, progress: Progress | None = None, *, deadline: float = DEADLINE, limit: int = MAX_BYTES
) -> bytes:
    """The body at ``url`` (following redirects), within ``deadline`` seconds and ``limit`` bytes.

    Any failure is a ``RegistryError`` of one line naming ``url``.
    """
    import urllib.parse

    end = time.monotonic() + deadline
    seen = [url]
    current = url
    while True:
        body, location = _fetch(current, end, deadline, limit, progress, origin=url)
        if location is None:
            return body
        nxt = urllib.parse.urljoin(current, location)
        if nxt in seen:
            chain = " -> ".join(one_line(u, 80) for u in [*seen[seen.index(nxt) :], nxt])
            raise RegistryError(f"download failed: redirect loop ({chain})", path=url)
        if len(seen) > MAX_REDIRECTS:
            raise RegistryError(f"download failed: more than {MAX_REDIRECTS} redirects", path=url)
        seen.append(nxt)
        current = nxt


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """An unconnected connection for ``url`` (through the environment's proxy, if any) and the request target."""
    import http.client
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("only http:// and https:// URLs can be downloaded")
    port = parts.port
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(parts.hostname):
        proxy = None
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    if not proxy:
        return cls(parts.hostname, port, timeout=timeout), target
    p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme == "http":
        return http.client.HTTPConnection(p.hostname, p.port, timeout=timeout), url
    conn = cls(p.hostname, p.port, timeout=timeout)
    conn.set_tunnel(parts.hostname, port)
    return conn, target


def _fetch(
    url: str, end: float, deadline: float, limit: int, progress: Progress | None, *, origin: str
) -> tuple[bytes, str | None]:
    """One request: (body, None), or (b"", Location) for a redirect; one-line errors."""
    import http.client
    import socket

    expired = threading.Event()
    got = 0
    conn: http.client.HTTPConnection | None = None
    sock: socket.socket | None = None  # kept: http.client drops conn.sock once a response will close

    def expire() -> None:
        expired.set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    remaining = end - time.monotonic()
    if remaining <= 0:
        raise RegistryError(f"download failed: took longer than the {deadline:g} s deadline", path=origin)
    watchdog = threading.Timer(remaining, expire)
    watchdog.daemon = True
    try:
        conn, target = _connection(url, min(STALL, remaining))
        watchdog.start()
        conn.connect()
        sock = conn.sock
        if expired.is_set():
            raise TimeoutError
        conn.request("GET", target, headers={"User-Agent": "portclass registry update", "Accept-Encoding": "identity"})
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            return b"", resp.getheader("Location")
        if resp.status != 200:
            raise RegistryError(f"download failed: HTTP {resp.status} {one_line(resp.reason, 80)}", path=origin)
        if (resp.getheader("Content-Type") or "").lower().startswith(("text/html", "application/xhtml")):
            raise RegistryError("the server returned an HTML page, not the registry", path=origin)
        length = resp.getheader("Content-Length")
        total = int(length) if length and length.strip().isdigit() else None
        if total is not None and total > limit:
            raise RegistryError(f"download refused: {too_big(total, limit)}", path=origin)
        parts: list[bytes] = []
        while True:
            chunk = resp.read1(_CHUNK)
            if not chunk:
                break
            got += len(chunk)
            if got > limit:
                raise RegistryError(f"download refused: {too_big(got, limit)}".replace("(", "(over ", 1), path=origin)
            parts.append(chunk)
            if progress:
                progress(got, total)
        if expired.is_set():
            raise TimeoutError
        if total is not None and got < total:  # read1 ends quietly where read() would raise IncompleteRead
            raise http.client.IncompleteRead(b"", total - got)
        body = b"".join(parts)
        if looks_like_html(body):
            raise RegistryError("the server returned an HTML page, not the registry", path=origin)
        return body, None
    except RegistryError:
        raise
    except (http.client.HTTPException, OSError, ValueError, UnicodeError) as exc:
        if expired.is_set():
            raise RegistryError(
                f"download failed: took longer than the {deadline:g} s deadline (got {got:,} bytes)", path=origin
            ) from None
        raise RegistryError(f"download failed: {_describe(exc, got)}", path=origin) from None
    finally:
        watchdog.cancel()
        if conn is not None:
            conn.close()


def _describe(exc: BaseException, got: int) -> str:
    """One line for a network or protocol failure."""
    import http.client
    import socket

    if isinstance(exc, http.client.IncompleteRead):
        more = f" of {got + exc.expected:,}" if exc.expected else ""
        return f"the connection closed before the end of the body (got {got:,}{more} bytes)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without a reply"
    if isinstance(exc, http.client.BadStatusLine):
        return f"the server's reply is not HTTP (status line {one_line(exc.line, 60)!r})"
    if isinstance(exc, http.client.LineTooLong):
        return "the server's reply has a header line too long for HTTP"
    if isinstance(exc, http.client.InvalidURL):
        return f"the URL is not valid ({one_line(exc, 80)})"
    if isinstance(exc, http.client.HTTPException):
        return f"the server's reply is not valid HTTP ({type(exc).__name__}: {one_line(exc, 80)})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no data from the server for {STALL:g} s (got {got:,} bytes)"
    if isinstance(exc, UnicodeError):
        return "the URL's host name is not valid"
    if isinstance(exc, OSError):
        return one_line(exc.strerror or exc)
    return one_line(exc)
