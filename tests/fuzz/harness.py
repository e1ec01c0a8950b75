"""What every fuzz target checks: one function per target, bytes in, ``Broken`` (or a stray exception) out.

The same functions run under atheris (``tests/fuzz/fuzz.py``, coverage-guided) and under pytest
(``tests/fuzz/test_regressions.py`` replays the kept crashing inputs), so a regression input fails
exactly as it did when the fuzzer found it.  Properties checked, beyond "no exception":

* only ``PortclassError`` (and its subclasses) escapes, and its message is one line;
* capture packet accounting adds up (packets read = packets in flows + without ports + non-IP +
  malformed + truncated + skipped link types + unattributed fragments);
* no negative durations, counters or capture spans;
* the same flows and counters whatever the chunk size the capture is read with;
* every report writer writes every flow (jsonl, json, csv, zeek, parquet read back);
* a failed ``registry update`` keeps the previous registry byte for byte and leaves no temporary file.
"""

from __future__ import annotations

import atexit
import gzip
import io
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np

SMALL_CHUNK = 256
"""Bytes per chunk for the second read (the reader's floor is lowered to it, see ``_small_chunks``)."""
SCRATCH = os.environ.get("PORTCLASS_FUZZ_SCRATCH") or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
"""Where scratch directories go: libFuzzer ends a run with _exit (no atexit), so ``tests.fuzz.run`` gives each
fuzzer process a directory of its own (in RAM) and removes it afterwards."""
WORK = Path(tempfile.mkdtemp(prefix="portclass-fuzz-", dir=SCRATCH))
"""Scratch directory of this process (capture files, reports, user registry directories), removed at exit."""
atexit.register(shutil.rmtree, WORK, True)
ROOT = Path(__file__).resolve().parents[2]


class Broken(AssertionError):
    """A property the target checks does not hold: ``name`` says which (it keys known bugs)."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        super().__init__(f"{name}: {detail}")


def check(ok: object, name: str, detail: str = "") -> None:
    """Raise ``Broken(name)`` unless ``ok``."""
    if not ok:
        raise Broken(name, detail)


def one_line_error(exc: BaseException) -> None:
    """A ``PortclassError`` reaches the user as one line: anything else, or a multi-line one, is broken."""
    from classifier.errors import PortclassError

    if not isinstance(exc, PortclassError):
        raise exc
    msg = str(exc)
    check(msg and "\n" not in msg and "\r" not in msg, "multi-line-error", repr(msg[:200]))


# --------------------------------------------------------------------------- the registry analyses label with


@cache
def registry():
    """The registry captures are labelled with: the system's full CSV (ipv6toolkit), else the seed registry."""
    from classifier.registry.sources import SYSTEM_FULL, compile_bytes, compile_file

    for cand in SYSTEM_FULL:
        if cand.is_file():
            return compile_file(cand, use_cache=False)
    from tests.fuzz.seeds import registry_renderings

    return compile_bytes(registry_renderings()["xml"], "seed.xml", use_cache=False)


# --------------------------------------------------------------------------- captures


def capture_file(data: bytes) -> Path:
    """The fuzz input as a capture file: the first byte chooses plain or gzip, the rest is the file."""
    mode, body = (data[0], data[1:]) if data else (0, b"")
    if mode & 1:
        path = WORK / "input.pcap.gz"
        body = gzip.compress(body, compresslevel=1, mtime=0)
    else:
        path = WORK / "input.pcap"
    path.write_bytes(body)
    return path


@contextmanager
def _small_chunks():
    """Let the reader take chunks below its floor (``MIN_CHUNK_BYTES``), to move chunk boundaries into small files."""
    from classifier.capture import reader

    old = reader.MIN_CHUNK_BYTES
    reader.MIN_CHUNK_BYTES = min(old, SMALL_CHUNK)
    try:
        yield
    finally:
        reader.MIN_CHUNK_BYTES = old


def read_flows(path: Path, chunk_bytes: int, lane_bytes: int | None = None):
    """Read one capture as ``pipeline.analyze`` does, with the chunk size given: (finalized flows, stats, rows)."""
    from classifier.capture.columns import CaptureStats
    from classifier.capture.reader import read_batches
    from classifier.evidence.match import scan
    from classifier.flows import FlowAggregator

    agg = FlowAggregator(300 * 10**9)
    stats, rows = CaptureStats(), 0
    kw = {} if lane_bytes is None else {"lane_bytes": lane_bytes}
    for batch in read_batches([str(path)], chunk_bytes, **kw):
        stats.merge(batch.stats)
        rows += len(batch)
        has = batch.payload_off >= 0
        check(
            (batch.payload_off[has] + batch.payload_len[has] <= batch.data.size).all(), "payload-outside-chunk"
        )
        check((batch.payload_len >= 0).all(), "negative-payload-length")
        agg.add(batch, scan(batch))
    return agg.result(), stats, rows


_COUNTERS = ("packets", "ip_packets", "non_ip", "malformed", "truncated", "fragments_unattributed")


def check_stats(stats, rows: int, flows) -> None:
    """Packet accounting and signs of one read."""
    for name in _COUNTERS:
        check(getattr(stats, name) >= 0, "negative-counter", name)
    for c in (stats.no_ports, stats.skipped_linktype):
        check(all(v >= 0 for v in c.values()), "negative-counter", str(c))
    accounted = rows + sum(stats.no_ports.values()) + stats.non_ip + stats.malformed + stats.truncated
    accounted += sum(stats.skipped_linktype.values()) + stats.fragments_unattributed
    check(accounted == stats.packets, "packet-accounting", f"{accounted} accounted of {stats.packets} read")
    in_flows = int(flows.packets_c2s.sum(dtype=np.int64) + flows.packets_s2c.sum(dtype=np.int64))
    check(in_flows == rows, "flow-packets", f"{in_flows} packets in flows of {rows} with ports")
    check(stats.ip_packets <= stats.packets, "packet-accounting", "more IP packets than packets")
    check_flows(flows)


def check_flows(fl) -> None:
    """No negative duration, packet or byte count in a flow table."""
    if not len(fl):
        return
    check((fl.last_ts_ns >= fl.first_ts_ns).all(), "negative-duration", "a flow ends before it starts")
    for name in ("packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c"):
        check((getattr(fl, name) >= 0).all(), "negative-counter", name)
    check(((fl.packets_c2s + fl.packets_s2c) > 0).all(), "empty-flow", "a flow without packets")


def _stat_tuple(stats) -> tuple:
    return tuple(getattr(stats, n) for n in _COUNTERS) + (dict(stats.no_ports), dict(stats.skipped_linktype))


def check_capture(data: bytes) -> None:
    """Target ``capture``: read with the default and with small chunks; accounting, signs, same result."""
    from classifier.errors import CaptureError
    from classifier.flows import canonical

    path = capture_file(data)
    try:
        flows, stats, rows = read_flows(path, 64 << 20)
    except CaptureError as exc:
        one_line_error(exc)
        return
    check_stats(stats, rows, flows)
    with _small_chunks():
        try:
            flows2, stats2, rows2 = read_flows(path, SMALL_CHUNK, lane_bytes=64)
        except CaptureError as exc:
            raise Broken("chunk-dependence", f"small chunks raise {exc} where 64 MiB chunks read") from None
    check_stats(stats2, rows2, flows2)
    one, two = _stat_tuple(stats), _stat_tuple(stats2)
    check(one == two, "chunk-dependence", f"counters {one} != {two}")
    check(canonical(flows).equals(canonical(flows2)), "chunk-dependence", f"{len(flows)} vs {len(flows2)} flows differ")


FORMATS = ("terminal", "jsonl", "json", "csv", "zeek", "parquet", "html")


def check_reports(data: bytes) -> None:
    """Target ``reports``: the whole analysis, then every report writer; each report holds every flow."""
    from classifier.errors import CaptureError
    from classifier.pipeline import analyze
    from classifier.report import write
    from classifier.report.summary import totals

    path = capture_file(data)
    try:
        a = analyze([path], registry())
    except CaptureError as exc:
        one_line_error(exc)
        return
    check_flows(a.flows)
    t = totals(a)
    if t.first_ts_ns is not None:
        check(t.last_ts_ns >= t.first_ts_ns, "negative-span", f"{t.first_ts_ns} .. {t.last_ts_ns}")
    n = len(a.flows)
    out = WORK / "report"
    for fmt in FORMATS:
        try:
            write(a, fmt, str(out), top=20)
        except Exception as exc:  # noqa: BLE001 - a writer may only fail with a one-line PortclassError
            one_line_error(exc)
            continue
        _check_report(fmt, out, n)
    check(not list(WORK.glob(".report*")) and not list(WORK.glob("*.tmp")), "temp-left", fmt)


def _check_report(fmt: str, out: Path, n: int) -> None:
    """The report at ``out`` parses and holds ``n`` flows."""
    if fmt == "jsonl":
        lines = out.read_text().splitlines()
        docs = [json.loads(line) for line in lines]
        check(len(docs) == n + 1, "report-rows", f"jsonl: {len(docs) - 1} rows of {n}")
        for d in docs[1:]:
            check(d["event"]["duration"] >= 0, "negative-duration", "jsonl event.duration")
    elif fmt == "json":
        doc = json.loads(out.read_text())
        check(len(doc["flows"]) == n, "report-rows", f"json: {len(doc['flows'])} rows of {n}")
    elif fmt == "csv":
        import csv

        text = out.read_text()
        body = [line for line in io.StringIO(text) if not line.startswith("#")]
        got = sum(1 for _ in csv.reader(body)) - 1
        check(got == n, "report-rows", f"csv: {got} rows of {n}")
    elif fmt == "zeek":
        rows = [line for line in out.read_text().splitlines() if not line.startswith("#")]
        check(len(rows) == n, "report-rows", f"zeek: {len(rows)} rows of {n}")
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        check(pq.read_table(out).num_rows == n, "report-rows", "parquet")
    elif fmt in ("html", "terminal"):
        text = out.read_text()
        check("ASSIGNMENT OF A PORT NUMBER" in text.replace("\n", " ").upper(), "notice-missing", fmt)


# --------------------------------------------------------------------------- registries


def check_registry(data: bytes) -> None:
    """Target ``registry``: parse any rendering; only a one-line ``RegistryError`` may escape; sane records."""
    from classifier.registry.model import TRANSPORTS
    from classifier.registry.parse import parse_bytes

    try:
        result = parse_bytes(data, "fuzz-registry", "2026-01-01")
    except Exception as exc:  # noqa: BLE001
        one_line_error(exc)
        return
    check(result.records, "empty-registry", "parsed with no records")
    check(result.format in ("xml", "csv", "text", "services"), "registry-format", result.format)
    for rec in result.records:
        for port in (rec.port_low, rec.port_high):
            check(port is None or (isinstance(port, int) and port >= 0), "registry-port", repr(port))
        tr = rec.transport
        check(tr is None or tr.strip() == tr, "registry-transport", repr(tr))
        check(rec.transport is None or rec.transport in TRANSPORTS or result.format != "services", "registry-transport")
        _ = (rec.kind, rec.transports, rec.to_dict())  # derived fields compute


def check_registry_compile(data: bytes) -> None:
    """Target ``registry_compile``: parse and compile (the dense port arrays); counts cover every port."""
    from classifier.registry.compile import STATUS_NAMES
    from classifier.registry.sources import compile_bytes

    try:
        reg = compile_bytes(data, "fuzz-registry", "2026-01-01", use_cache=False)
    except Exception as exc:  # noqa: BLE001
        one_line_error(exc)
        return
    check(reg.provenance.records > 0, "empty-registry", "compiled with no records")
    check(reg.status.shape == (4, 65536), "registry-shape", str(reg.status.shape))
    check(int(reg.status.max()) < len(STATUS_NAMES), "registry-status", str(int(reg.status.max())))
    reg.provenance.line()
    for row in reg.counts().values():
        check(sum(v for k, v in row.items() if k in STATUS_NAMES) == 65536, "registry-counts", str(row))
    check(len(reg.service_names) >= 1, "registry-names")


# --------------------------------------------------------------------------- registry update over HTTP


class OneShotServer:
    """A TCP server on 127.0.0.1 that answers every connection with ``payload`` bytes, then closes it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.payload = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(2)
                try:
                    _read_request(conn)
                    conn.sendall(self.payload)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(4096):  # let the client read everything before the close
                        pass
                except OSError:
                    pass


def _read_request(conn: socket.socket) -> None:
    got = b""
    while b"\r\n\r\n" not in got and len(got) < 65536:
        part = conn.recv(4096)
        if not part:
            return
        got += part


@cache
def server() -> OneShotServer:
    """This process's fuzz server (one for every input)."""
    return OneShotServer()


_LOOPBACK = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _loopback_connect(self: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
        raise OSError(101, f"fuzz harness: no traffic outside loopback ({host})")
    return _real_connect(self, address)


def _loopback_getaddrinfo(host: object, *args: object, **kw: object) -> object:
    if host is not None and not str(host).startswith(_LOOPBACK):
        raise socket.gaierror(socket.EAI_NONAME, f"fuzz harness: no name lookups ({host})")
    return _real_getaddrinfo(host, *args, **kw)


@contextmanager
def loopback_only():
    """Confine this process to loopback meanwhile: a fuzzed redirect must reach no real host, DNS or proxy."""
    saved_env = {k: os.environ.get(k) for k in (*_PROXY_VARS, "no_proxy", "XDG_DATA_HOME", "XDG_CACHE_HOME")}
    socket.socket.connect = _loopback_connect  # type: ignore[method-assign]
    socket.getaddrinfo = _loopback_getaddrinfo  # type: ignore[assignment]
    for var in _PROXY_VARS:
        os.environ.pop(var, None)
    os.environ["no_proxy"] = "*"
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.getaddrinfo = _real_getaddrinfo  # type: ignore[assignment]
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def _user_dirs() -> Path:
    """Point portclass's user directories into the scratch directory, holding a small previous registry."""
    from classifier.registry import sources
    from tests.fuzz.seeds import registry_renderings

    home = WORK / "user"
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["XDG_CACHE_HOME"] = str(home / "cache")
    if not sources.current_path().is_file():
        sources.install(registry_renderings()["xml"], "previous.xml", "2026-01-01")
    return sources.data_dir()


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def check_update(data: bytes) -> None:
    """Target ``update``: ``registry update`` from a local server answering with the fuzz input (status line,
    headers and body); only a one-line ``RegistryError`` may escape, and a failure keeps the previous registry."""
    from classifier.registry import sources

    srv = server()
    srv.payload = data
    with loopback_only():
        d = _user_dirs()
        before = _snapshot(d)
        try:
            sources.update(f"http://127.0.0.1:{srv.port}/service-names-port-numbers.xml")
        except Exception as exc:  # noqa: BLE001
            one_line_error(exc)
            after = _snapshot(d)
            check(after == before, "previous-registry-lost", f"{sorted(before)} -> {sorted(after)}")
            return
        after = _snapshot(d)
        check(any(n.startswith("source") for n in after), "install-incomplete", str(sorted(after)))
        check(not [n for n in after if n.startswith(".") and n != ".lock"], "temp-left", str(sorted(after)))
        sources.clear_user_registry()  # the next input starts from the small previous registry again


TARGETS: dict[str, Callable[[bytes], None]] = {
    "capture": check_capture,
    "reports": check_reports,
    "registry": check_registry,
    "registry_compile": check_registry_compile,
    "update": check_update,
}
"""Target name -> the check it runs on one input."""
