"""`registry update` against hostile HTTP servers on 127.0.0.1 (raw sockets in threads, started by the test).

Every failure is one line naming the URL, exit 2, the previous registry kept; the whole download has a
deadline (``--timeout``) and a size cap, however slowly or endlessly the server sends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from classifier.registry import sources
from classifier.registry.files import MAX_BYTES
from tests.conftest import run_cli

Handler = Callable[[socket.socket, str], None]


class RawServer:
    """A TCP server on 127.0.0.1 that gives each connection's request path to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                req = b""
                while b"\r\n\r\n" not in req:
                    data = conn.recv(4096)
                    if not data:
                        return
                    req += data
                self.handler(conn, req.split(b" ")[1].decode())
            except OSError:
                pass

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.sock.close()


def _head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture()
def installed(user_dirs, xml_2025_path):
    """The 2025 edition imported as the previous registry; yields a check that it is still the default."""
    assert run_cli("registry", "import", str(xml_2025_path)).returncode == 0
    before = sources.current_path().read_bytes()

    def kept() -> None:
        assert sources.current_path().read_bytes() == before
        info = json.loads(run_cli("registry", "info", "--format", "json").stdout)
        assert info["edition"] == "2025-08-26"

    return kept


def _fails(url: str, *needles: str, timeout: str | None = None, wall: float = 60) -> tuple[str, float]:
    args = ["registry", "update", "--url", url] + (["--timeout", timeout] if timeout else [])
    t0 = time.monotonic()
    res = run_cli(*args, timeout=wall)
    took = time.monotonic() - t0
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in (url, "previous registry is kept", *needles):
        assert n in lines[0], lines[0]
    return lines[0], took


def test_garbage_status_line(installed):
    def handler(conn, path):
        conn.sendall(b"SPAM SPAM SPAM\r\n\r\n")

    with RawServer(handler) as srv:
        _fails(f"{srv.url}/r.xml", "not HTTP", "SPAM")
    installed()


def test_chunked_body_cut(installed, xml_path):
    data = xml_path.read_bytes()[:100_000]

    def handler(conn, path):
        conn.sendall(_head(Transfer_Encoding="chunked", Content_Type="application/xml"))
        conn.sendall(b"%x\r\n" % len(data) + data + b"\r\n")  # then close: no last chunk

    with RawServer(handler) as srv:
        _fails(f"{srv.url}/r.xml", "closed before the end of the body", "100,000 bytes")
    installed()


def test_length_body_cut(installed, xml_path):
    data = xml_path.read_bytes()

    def handler(conn, path):
        conn.sendall(_head(Content_Length=str(len(data))) + data[:50_000])

    with RawServer(handler) as srv:
        _fails(f"{srv.url}/r.xml", "closed before the end of the body")
    installed()


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_slow_drip_hits_the_overall_deadline(installed, phase):
    """One byte every 0.3 s never trips a socket timeout; the overall deadline ends it."""

    def handler(conn, path):
        if phase == "body":
            conn.sendall(_head(Content_Length="1000000") + b"<?xml")
            drip = b"x" * 1000
        else:
            drip = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000
        for b in drip:
            conn.sendall(bytes([b]))
            time.sleep(0.3)

    with RawServer(handler) as srv:
        line, took = _fails(f"{srv.url}/r.xml", "longer than the 2 s deadline", timeout="2", wall=30)
    assert took < 15, took
    installed()


def test_endless_body_is_capped(installed):
    """A body without end (no Content-Length) is cut at the size cap; the server stops at twice the cap."""
    block = b"<record><name>x</name><protocol>tcp</protocol><number>1</number></record>\n" * 1000

    def handler(conn, path):
        conn.sendall(
            _head(Content_Type="application/xml")
            + b'<?xml version="1.0"?><registry xmlns="http://www.iana.org/assignments" id="service-names-port-numbers">'
        )
        sent = 0
        while sent < 2 * MAX_BYTES:
            conn.sendall(block)
            sent += len(block)

    with RawServer(handler) as srv:
        _fails(f"{srv.url}/r.xml", "too large for a registry", wall=120)
    installed()


def test_announced_huge_length_is_refused_before_reading(installed):
    """Refused on the announced length: portclass hangs up without waiting for a body that never comes
    (no timed assertion: a loaded machine may start the CLI slowly)."""
    hung_up = threading.Event()

    def handler(conn, path):
        conn.sendall(_head(Content_Length=str(14 << 30)) + b"<?xml")
        conn.settimeout(120)
        if conn.recv(1) == b"":  # the client closed the connection
            hung_up.set()

    with RawServer(handler) as srv:
        _fails(f"{srv.url}/r.xml", "too large for a registry", f"{14 << 30:,} bytes")
        assert hung_up.wait(10)
    installed()


def test_redirect_loop_is_one_line(installed):
    def handler(conn, path):
        conn.sendall(_head("302 Found", Location="/b" if path == "/a" else "/a", Content_Length="0"))

    with RawServer(handler) as srv:
        line, _ = _fails(f"{srv.url}/a", "redirect loop")
    installed()


def test_redirect_is_followed(user_dirs, xml_path):
    data = xml_path.read_bytes()

    def handler(conn, path):
        if path == "/old":
            conn.sendall(_head("301 Moved Permanently", Location="/new", Content_Length="0"))
        else:
            conn.sendall(_head(Content_Length=str(len(data)), Content_Type="application/xml") + data)

    with RawServer(handler) as srv:
        res = run_cli("registry", "update", "--url", f"{srv.url}/old")
    assert res.returncode == 0, res.stderr
    assert json.loads(run_cli("registry", "info", "--format", "json").stdout)["edition"] == "2026-08-17"


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/xml"])
def test_html_page_is_named_as_such(installed, ctype):
    page = b"<!DOCTYPE html>\n<html><head><title>503</title></head><body>Service Unavailable</body></html>\n"

    def handler(conn, path):
        conn.sendall(_head(Content_Type=ctype, Content_Length=str(len(page))) + page)

    with RawServer(handler) as srv:
        line, _ = _fails(f"{srv.url}/r.xml", "the server returned an HTML page, not the registry")
    assert "DTD" not in line
    installed()


def test_served_registry_with_malformed_record_installs_and_says_so(user_dirs, xml_path):
    data = xml_path.read_bytes().replace(b"<number>79</number>", b"<number>1e3</number>", 1)

    def handler(conn, path):
        conn.sendall(_head(Content_Length=str(len(data))) + data)

    with RawServer(handler) as srv:
        res = run_cli("registry", "update", "--url", f"{srv.url}/r.xml")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "14532 records, 1 malformed records skipped" in res.stdout
    info = json.loads(run_cli("registry", "info", "--format", "json").stdout)
    assert info["skipped"] == 1 and "'1e3'" in info["skipped_example"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_timeout_option_is_checked(user_dirs, value):
    res = run_cli("registry", "update", "--timeout", value)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--timeout" in res.stderr


def test_non_http_url_is_one_line(user_dirs):
    res = run_cli("registry", "update", "--url", "file:///etc/passwd")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "only http:// and https://" in res.stderr
