"""``portclass live``: real captures on the loopback interface (and a veth pair between two network
namespaces the test makes), with real traffic the test makes, for each backend.

Traffic: an HTTP exchange with a local server on 8080/tcp (http-alt), a UDP request/response on
3478/udp (stun), a TCP connection to 48999/tcp (unassigned) and one to 42000/tcp (unassigned, with
known unauthorized use).  A BPF filter on those ports keeps stray loopback traffic out, and flows
are matched by the client ports the test's sockets had.  Every capture stops by itself or by a
signal within seconds.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import http.server
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.shared import shared

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"http": 8080, "udp": 3478, "unassigned": 48999, "unauthorized": 42000}
BPF = " or ".join(f"port {p}" for p in PORTS.values())
EXPECTED = {  # service, status, flags, transport
    "http": ("http-alt", "assigned", [], "tcp"),
    "udp": ("stun", "assigned", [], "udp"),
    "unassigned": (None, "unassigned", ["unassigned-port"], "tcp"),
    "unauthorized": (None, "unassigned", ["unauthorized-use-known", "unassigned-port"], "tcp"),
}


def _python_can_capture() -> bool:
    from classifier.live.checks import can_capture

    return can_capture()


def _dumpcap_can_capture() -> bool:
    """dumpcap may capture here (root, or its file capabilities / wireshark group)."""
    exe = shutil.which("dumpcap")
    if exe is None:
        return False
    p = subprocess.Popen(
        [exe, "-i", "lo", "-f", "udp port 9", "-q", "-w", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        p.wait(1.0)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait(5)
        return True  # still capturing after a second: allowed
    return p.returncode == 0


def _backend_ready(name: str) -> str | None:
    """Why ``name`` cannot capture here (None: it can)."""
    if name in ("dumpcap", "pyshark") and not shutil.which("dumpcap"):
        return "dumpcap not installed (Debian: tshark)"
    if name == "pyshark":
        if not shutil.which("tshark"):
            return "tshark not installed"
        try:
            import pyshark  # noqa: F401
        except ImportError:
            return "pyshark not installed"
    if name == "scapy":
        try:
            import scapy  # noqa: F401
        except ImportError:
            return "scapy not installed"
        if not _python_can_capture():
            return "this Python may not capture (needs root or CAP_NET_RAW)"
    elif not _dumpcap_can_capture():
        return "dumpcap may not capture here (needs root or CAP_NET_RAW)"
    return None


_WHY = {b: _backend_ready(b) for b in ("dumpcap", "scapy", "pyshark")}
BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(_WHY[b] is not None, reason=str(_WHY[b]))) for b in _WHY]
needs_dumpcap = pytest.mark.skipif(_WHY["dumpcap"] is not None, reason=str(_WHY["dumpcap"]))


# ---- the test's own servers and traffic ------------------------------------------------------


def _reuse(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # another test run may serve the same port


class _Http(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        _reuse(self.socket)
        super().server_bind()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"portclass live test\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def servers():
    """HTTP on 127.0.0.1:8080, a UDP echo on 3478, TCP echo servers on 48999 and 42000."""
    stop = threading.Event()
    socks: list[socket.socket] = []
    httpd = _Http(("127.0.0.1", PORTS["http"]), _Hello)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _reuse(u)
    u.bind(("127.0.0.1", PORTS["udp"]))
    u.settimeout(0.2)
    socks.append(u)

    def udp_echo() -> None:
        while not stop.is_set():
            try:
                data, addr = u.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            u.sendto(data, addr)

    threading.Thread(target=udp_echo, daemon=True).start()
    for name in ("unassigned", "unauthorized"):
        s = socket.socket()
        _reuse(s)
        s.bind(("127.0.0.1", PORTS[name]))
        s.listen()
        s.settimeout(0.2)
        socks.append(s)

        def tcp_echo(s: socket.socket = s) -> None:
            while not stop.is_set():
                try:
                    c, _ = s.accept()
                except (TimeoutError, OSError):
                    continue
                with c:
                    c.settimeout(2)
                    c.sendall(c.recv(100))

        threading.Thread(target=tcp_echo, daemon=True).start()
    yield
    stop.set()
    httpd.shutdown()
    httpd.server_close()
    for s in socks:
        s.close()


def make_traffic() -> dict[str, int]:
    """One exchange with each server; the client port each used."""
    ports: dict[str, int] = {}
    with socket.create_connection(("127.0.0.1", PORTS["http"]), timeout=5) as c:
        ports["http"] = c.getsockname()[1]
        c.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := c.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.") and b"portclass live test" in reply
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"ping from the portclass test", ("127.0.0.1", PORTS["udp"]))
        assert u.recvfrom(2048)[0] == b"ping from the portclass test"
        ports["udp"] = u.getsockname()[1]
    for name in ("unassigned", "unauthorized"):
        with socket.create_connection(("127.0.0.1", PORTS[name]), timeout=5) as t:
            ports[name] = t.getsockname()[1]
            t.sendall(b"hello there\n")
            assert t.recv(100) == b"hello there\n"
    return ports


# ---- running the command ------------------------------------------------------------------


class LiveCli:
    """``python -m classifier --registry XML live ARGS`` in the background, its output collected."""

    def __init__(self, *args: str, prefix: tuple[str, ...] = (), env: dict | None = None) -> None:
        xml = shared("registry", "service-names-port-numbers.xml")
        cmd = [*prefix, sys.executable, "-m", "classifier", "--registry", str(xml), "live", *args]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=full_env
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            if line.startswith("portclass: capturing on"):
                self.ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"capture did not start: {''.join(self.err)}")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"portclass live did not stop: {''.join(self.err)}")
        for t in self._threads:
            t.join(5)
        return rc, "".join(self.out), "".join(self.err)


def _flows_by_client(docs: list[dict]) -> dict[tuple[int, int], dict]:
    return {(d["source"]["port"], d["destination"]["port"]): d for d in docs}


def _check_labels(flows: dict[tuple[int, int], dict], clients: dict[str, int]) -> None:
    for name, cport in clients.items():
        d = flows.get((cport, PORTS[name]))
        assert d is not None, f"no flow {name} {cport} -> {PORTS[name]} in {sorted(flows)}"
        service, status, flags, transport = EXPECTED[name]
        pc = d["portclass"]
        assert (pc.get("service"), pc["status"], pc.get("flags", []), d["network"]["transport"]) == (
            service,
            status,
            flags,
            transport,
        ), name
        assert d["source"]["ip"] == d["destination"]["ip"] == "127.0.0.1"
        assert d["source"]["packets"] >= 1 and d["destination"]["packets"] >= 1, name
        if transport == "tcp":
            assert pc["server_rule"] == "syn", name
            assert d["network"]["packets"] >= 6, name  # handshake, data both ways, teardown
    assert flows[(clients["unauthorized"], PORTS["unauthorized"])]["portclass"]["severity"] > 0


def _tshark_frames(path: Path) -> list[str]:
    r = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name", "-e", "tcp.dstport"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


# ---- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "jobs"), [*(pytest.param(p.values[0], "2", marks=p.marks) for p in BACKENDS), ("dumpcap", "1")]
)
def test_sigint_mid_capture_labels_every_flow(backend, jobs, servers, tmp_path):
    """Each backend: flows, labels and flags of real traffic; SIGINT leaves complete jsonl and pcapng files.
    dumpcap reads, decodes and scans in a child process (``--jobs 2``, the default) or in this one (``--jobs 1``)."""
    if _WHY[backend] is not None:
        pytest.skip(_WHY[backend])
    out, pcap = tmp_path / "flows.jsonl", tmp_path / "seen.pcapng"
    cli = LiveCli(
        "-i", "lo", "--bpf", BPF, "--backend", backend, "--duration", "60", "--refresh", "0.5",
        "-f", "jsonl", "-o", str(out), "--write-pcap", str(pcap), "--jobs", jobs,
    )  # fmt: skip
    cli.wait_ready()
    clients = make_traffic()
    time.sleep(0.8)  # mid-capture: the capture would go on for a minute
    cli.proc.send_signal(signal.SIGINT)
    rc, stdout, stderr = cli.finish()
    assert rc == 130, stderr  # one rule with `analyze`: a signal ended the run
    assert "Traceback" not in stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    head, close = docs[0], docs[-1]
    assert head["event"]["dataset"] == "portclass.notice" and "NOR THAT IT NECESSARILY" in head["message"]
    assert close["event"]["dataset"] == "portclass.close"  # the flows in between, as they ended
    assert close["portclass"]["partial"] is True and close["portclass"]["interrupted_by"] == "SIGINT"
    live = close["portclass"]["live"]
    assert live["backend"] == backend and live["stopped_by"] == "SIGINT" and live["interfaces"] == ["lo"]
    assert live["dropped"] == 0
    flows = _flows_by_client(docs[1:-1])
    _check_labels(flows, clients)
    http = flows[(clients["http"], 8080)]  # the payload evidence (scanned in the child with --jobs 2)
    assert http["portclass"]["evidence"]["signature"] == "http-request" and http["http"]["request"]["method"] == "GET"
    if backend == "pyshark":
        assert flows[(clients["http"], 8080)]["portclass"]["tshark_protocol"] == "http"
        assert all(d["portclass"]["tshark_protocol"] for d in flows.values())
    # the summary: the registry's warning, the run's totals and where the flows went
    order = [stdout.index(s) for s in ("IANA registry notice", "Capture", "Flows", "Written")]
    assert order == sorted(order) and f"to {out}" in stdout.replace("\n", "")
    assert "stopped by SIGINT" in stderr
    # the saved packets: complete, readable by tshark, the packets the flows carry
    frames = _tshark_frames(pcap)
    assert len(frames) == live["packets"] == live["file"]["packets"] == sum(d["network"]["packets"] for d in docs[1:-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.jsonl", "seen.pcapng"]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first), from /proc."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for kid in (task / "children").read_text().split():
                out += [int(kid), *_descendants(int(kid))]
    return out


def _running(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie (whose parent, maybe a container's init, has not reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@needs_dumpcap
def test_helpers_end_with_a_killed_sensor():
    """The sensor killed outright (SIGKILL: no handler runs) while its filter matches nothing: the reading
    process (in a session of its own) and its dumpcap end too, not left capturing for ever."""
    cli = LiveCli("-i", "lo", "--bpf", "udp port 9", "--jobs", "2", "--duration", "120", "-f", "jsonl")
    cli.wait_ready()
    helpers = _descendants(cli.proc.pid)
    names = {Path(f"/proc/{p}/comm").read_text().strip() for p in helpers}
    assert {"portclass-feed", "dumpcap"} <= names, names
    cli.proc.kill()
    cli.proc.wait(10)
    deadline = time.monotonic() + 15
    while (alive := [p for p in helpers if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in alive:  # left over: end them, and fail
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    assert not alive


@needs_dumpcap
def test_count_stops_the_capture(servers, tmp_path):
    out, pcap = tmp_path / "flows.json", tmp_path / "seen.pcapng"
    cli = LiveCli(
        "-i", "lo", "--bpf", BPF, "--count", "7", "--duration", "60", "-f", "json", "-o", str(out),
        "--write-pcap", str(pcap),
    )  # fmt: skip
    cli.wait_ready()
    make_traffic()
    rc, _, stderr = cli.finish(30)
    assert rc == 0, stderr
    doc = json.loads(out.read_text())
    assert doc["live"]["stopped_by"] == "count" and doc["live"]["packets"] == 7
    assert doc["totals"]["packets"] == 7 and sum(f["network"]["packets"] for f in doc["flows"]) == 7
    assert len(_tshark_frames(pcap)) == 7


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "pyshark"])
def test_sigterm_and_duration(backend, servers, tmp_path):
    """SIGTERM stops like Ctrl-C; --duration stops by itself (CSV report)."""
    out = tmp_path / "flows.csv"
    cli = LiveCli("-i", "lo", "--bpf", BPF, "--backend", backend, "--duration", "60", "-f", "csv", "-o", str(out))
    cli.wait_ready()
    clients = make_traffic()
    time.sleep(0.5)
    cli.proc.send_signal(signal.SIGTERM)
    rc, _, stderr = cli.finish()
    assert rc == 143 and "stopped by SIGTERM" in stderr, stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# NOTICE (IANA registry)") and any(x.startswith("# live capture: ") for x in lines)
    assert "# partial: interrupted by SIGTERM; the report covers only the packets read before it" in lines
    rows = list(csv.DictReader(x for x in lines if not x.startswith("#")))
    keys = {(int(r["source.port"]), int(r["destination.port"])) for r in rows}
    assert {(c, PORTS[n]) for n, c in clients.items()} <= keys

    t0 = time.monotonic()
    cli = LiveCli("-i", "lo", "--bpf", "udp port 9", "--backend", backend, "--duration", "1", "-f", "json")
    rc, stdout, stderr = cli.finish(30)
    assert rc == 0, stderr
    assert time.monotonic() - t0 < 25
    doc = json.loads(stdout)  # the report goes to stdout; the summary then to stderr
    assert doc["live"]["stopped_by"] == "duration" and doc["flows"] == []
    assert doc["partial"] is False and doc["interrupted_by"] is None
    assert "IANA registry notice" in stderr


@needs_dumpcap
def test_rolling_view_on_a_terminal(servers):
    """On a terminal: the view (warning, rate, drops, services, flagged flows) on the alternate screen,
    then the summary."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 150, 0, 0))
    xml = shared("registry", "service-names-port-numbers.xml")
    cmd = [sys.executable, "-m", "classifier", "--registry", str(xml), "live", "-i", "lo", "--bpf", BPF]
    cmd += ["--duration", "3", "--refresh", "0.3"]
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="150", LINES="45")
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, close_fds=True)
    os.close(slave)
    buf = b""
    sent = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        if not sent and b"capturing on" in buf:
            make_traffic()
            sent = True
    os.close(master)
    assert proc.wait(30) == 0
    text = buf.decode(errors="replace")
    assert "\x1b[?1049h" in text  # the alternate screen: nothing scrolls away
    view = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text[text.index("\x1b[?1049h") : text.index("\x1b[?1049l")])
    for piece in ("IANA registry notice", "live on lo", "packets (", "drops:", "Services claimed", "Newest flagged"):
        assert piece in view, piece
    assert "42000/tcp" in view and "unauthorized-use-known" in view
    summary = text[text.index("\x1b[?1049l") :]
    assert "Flagged flows, worst first" in summary


# ---- errors ---------------------------------------------------------------------------------


def _one_line_error(rc: int, stdout: str, stderr: str) -> str:
    assert rc == 2, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("portclass: "), stderr
    return lines[0]


def test_unknown_interface_lists_the_interfaces():
    line = _one_line_error(*LiveCli("-i", "nosuch0", "--duration", "1").finish())
    assert "no interface named 'nosuch0'" in line and " lo" in line


def test_invalid_bpf_shows_the_compiler_message():
    line = _one_line_error(*LiveCli("-i", "lo", "--bpf", "udp prt 53", "--duration", "1").finish())
    assert "invalid capture filter 'udp prt 53'" in line and "syntax error" in line


@pytest.mark.parametrize(
    ("backend", "package"), [("dumpcap", "wireshark-common"), ("pyshark", "Debian package tshark")]
)
def test_missing_program_names_the_package(backend, package):
    line = _one_line_error(*LiveCli("-i", "lo", "--backend", backend, env={"PATH": "/nonexistent"}).finish())
    assert "not found on PATH" in line and package in line


def test_missing_scapy_says_how_to_install(tmp_path):
    fake = tmp_path / "scapy"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise ImportError("No module named scapy")\n')
    line = _one_line_error(*LiveCli("-i", "lo", "--backend", "scapy", env={"PYTHONPATH": str(tmp_path)}).finish())
    assert "python3-scapy" in line and "pip install scapy" in line


def _dumpcap_installed_as(install: str, where: Path) -> dict:
    """The environment whose PATH finds a dumpcap installed as ``install``: the system's own, or a
    copy made here with file capabilities (Debian's install-setuid), setuid root, or neither."""
    if install == "system":
        return {}
    if install == "file-caps" and not shutil.which("setcap"):
        pytest.skip("setcap (libcap2-bin) is not installed")
    where.mkdir()
    copy = where / "dumpcap"
    shutil.copyfile(shutil.which("dumpcap"), copy)  # not copy2: it would copy the file capabilities
    os.chmod(copy, 0o755)
    if install == "file-caps":
        subprocess.run(["setcap", "cap_net_raw,cap_net_admin=eip", str(copy)], check=True, timeout=30)
    elif install == "setuid":
        os.chmod(copy, 0o4755)
    return {"PATH": f"{where}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop CAP_NET_RAW")
@pytest.mark.parametrize(
    "backend, install",
    [(b, i) for b in ("dumpcap", "pyshark") for i in ("system", "file-caps", "setuid", "plain")]
    + [("scapy", "system")],
)
def test_no_permission_says_how_to_grant_it(backend, install, tmp_path):
    """Without CAP_NET_RAW (dropped from the bounding set) the capture is refused with the fix,
    however dumpcap is installed: with file capabilities the kernel refuses to exec it (EPERM)."""
    if _WHY[backend] and "not installed" in _WHY[backend]:
        pytest.skip(_WHY[backend])
    env = _dumpcap_installed_as(install, tmp_path / "bin") if backend != "scapy" else {}
    drop = ("setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin", "--")
    cli = LiveCli("-i", "lo", "--backend", backend, "--duration", "5", prefix=drop, env=env)
    line = _one_line_error(*cli.finish())
    assert "no permission to capture on lo" in line and "CAP_NET_RAW" in line and "setcap cap_net_raw" in line


# ---- two interfaces: lo and a veth pair between the test's own namespaces --------------------

PEER = r"""
import socket, sys, threading, time
role = sys.argv[1]
if role == "udp-echo":  # in namespace B: echo on 198.18.0.2:3478
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("198.18.0.2", 3478))
    print("ready", flush=True)
    while True:
        d, a = u.recvfrom(2048); u.sendto(d, a)
else:  # in namespace A: a TCP server on lo:42000 and the clients
    s = socket.socket(); s.bind(("127.0.0.1", 42000)); s.listen()
    def serve():
        c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
    threading.Thread(target=serve, daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
    u.sendto(b"ping", ("198.18.0.2", 3478)); u.recvfrom(100)
    t = socket.create_connection(("127.0.0.1", 42000), timeout=5); t.sendall(b"hi"); t.recv(10); t.close()
    print("done", flush=True)
"""


@pytest.fixture()
def namespaces(tmp_path):
    """Namespaces A and B joined by veth va0 (198.18.0.1/30, in A) -- vb0 (198.18.0.2/30, in B)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to make network namespaces")
    a, b = f"pcl{os.getpid()}a", f"pcl{os.getpid()}b"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "va0", "netns", a, "type", "veth", "peer", "name", "vb0", "netns", b)
        ip("-n", a, "addr", "add", "198.18.0.1/30", "dev", "va0")
        ip("-n", b, "addr", "add", "198.18.0.2/30", "dev", "vb0")
        for ns, dev in ((a, "va0"), (b, "vb0"), (a, "lo"), (b, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
    except subprocess.CalledProcessError as exc:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make network namespaces here: {exc.stderr.decode(errors='replace').strip()}")
    script = tmp_path / "peer.py"
    script.write_text(PEER)
    yield a, b, script
    for ns in (a, b):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@needs_dumpcap
def test_two_interfaces_in_test_namespaces(namespaces, tmp_path):
    a, b, script = namespaces
    out, pcap = tmp_path / "flows.jsonl", tmp_path / "seen.pcapng"
    echo = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, str(script), "udp-echo"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        cli = LiveCli(
            "-i", "lo", "-i", "va0", "--bpf", "udp port 3478 or tcp port 42000", "--duration", "60",
            "-f", "jsonl", "-o", str(out), "--write-pcap", str(pcap), prefix=("ip", "netns", "exec", a),
        )  # fmt: skip
        cli.wait_ready()
        client = subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, str(script), "clients"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert client.returncode == 0, client.stderr
        time.sleep(0.8)
        cli.proc.send_signal(signal.SIGINT)
        rc, _, stderr = cli.finish()
    finally:
        echo.kill()
        echo.wait()
    assert rc == 130, stderr
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    live = docs[-1]["portclass"]["live"]
    assert [c["interface"] for c in live["interface_counters"]] == ["lo", "va0"] and live["dropped"] == 0
    by_server = {(d["destination"]["ip"], d["destination"]["port"]): d for d in docs[1:-1]}
    udp = by_server[("198.18.0.2", 3478)]
    assert udp["source"]["ip"] == "198.18.0.1" and udp["portclass"]["service"] == "stun"
    assert udp["source"]["packets"] == udp["destination"]["packets"] == 1
    tcp = by_server[("127.0.0.1", 42000)]
    assert tcp["portclass"]["flags"] == ["unauthorized-use-known", "unassigned-port"]
    names = {line.split("\t")[0] for line in _tshark_frames(pcap)}
    assert names == {"lo", "va0"}
