"""The protocol table on traffic of the real thing: Debian's servers, started by the test on loopback.

Each test starts its own server (Redis, PostgreSQL, MariaDB, OpenSSH, Mosquitto, dnsmasq) on a
free port with its own configuration under a fresh directory, captures loopback with tcpdump
while a real client talks to it, and checks that portclass names the protocol of the flow,
with the verdict the registry implies for that port; tshark, told the port, names the same
protocol (an independent dissector: the traffic really is what the test says).  Without a
binary (or without the right to capture) a test skips with the reason, outside CI only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def need(*names: str) -> list[str]:
    """Paths of the binaries (Debian's sbin and PostgreSQL's bin included); skip (fail in CI) when one is missing."""
    extra = [*sorted(Path("/usr/lib/postgresql").glob("*/bin")), Path("/usr/sbin"), Path("/sbin")]
    path = os.pathsep.join([os.environ.get("PATH", ""), *map(str, extra)])
    out = []
    for n in names:
        exe = shutil.which(n, path=path)
        if exe is None:
            msg = f"{n} is not installed (bash .ci/setup --test installs it)"
            if os.environ.get("CI"):
                raise RuntimeError(msg)
            pytest.skip(msg)
        out.append(exe)
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("capturing loopback needs root (CAP_NET_RAW)")
    return out


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on now (TCP or UDP, 127.0.0.1)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in(lo: int, hi: int, kind: int) -> socket.socket:
    """A socket bound to a free 127.0.0.1 port in [lo, hi] (UDP has no handshake: the test fixes which
    side is the server by the port ranges, RFC 6335's dynamic range for clients)."""
    import random

    for p in random.sample(range(lo, hi + 1), 200):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
            return s
        except OSError:
            s.close()
    raise RuntimeError(f"no free port in {lo}-{hi}")


def wait_tcp(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until ``port`` accepts connections (or the server died)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def running(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Stop ``proc`` when the block ends, however it ends."""
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def server(cmd: list[str], port: int, **kw) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends (waits for its TCP port unless ``port`` is 0)."""
    with running(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)) as proc:
        if port:
            wait_tcp(port, proc)
        yield proc


def _sync(path: Path, probe: int, size: int) -> None:
    """Send probe datagrams until the capture file grows past ``size`` bytes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(200):
            u.sendto(b"portclass capture probe", ("127.0.0.1", probe))
            time.sleep(0.05)
            if path.exists() and path.stat().st_size > size:
                return
    raise TimeoutError("tcpdump wrote no packet")


@contextmanager
def capture(path: Path, bpf: str) -> Iterator[Path]:
    """tcpdump on loopback into ``path`` while the block runs (ready once a probe datagram is in the file)."""
    (tcpdump,) = need("tcpdump")
    probe = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(
        [tcpdump, "-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-w", str(path),
         f"({bpf}) or udp port {probe}"],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        if "listening" not in line:
            pytest.skip(f"tcpdump cannot capture loopback: {line.strip()}")
        _sync(path, probe, 24)  # more than the file header: capturing
        yield path
        _sync(path, probe, path.stat().st_size)  # a probe after the traffic is in the file: so is the traffic
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def classify(pcap: Path, port: int, transport: str = "tcp") -> list[dict]:
    """portclass's rows of the flows to ``port``."""
    from classifier.api import classify as run

    return [r for r in run([pcap]) if r["destination.port"] == port and r["network.transport"] == transport]


def tshark_says(pcap: Path, decode_as: str) -> set[str]:
    """tshark's Protocol column over the capture, the port decoded as a protocol (``tcp.port==N,resp``)."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-n", "-d", decode_as, "-T", "fields", "-e", "_ws.col.Protocol"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {x.strip() for x in out.split()}


def expected_verdict(reg, port: int, transport: str = "tcp") -> str:
    """What the registry implies for a protocol none of the port's names carries: mismatch, or unregistered."""
    return "mismatch" if any(True for _ in reg.names_on(transport, port)) else "unregistered"


def check(reg, pcap: Path, port: int, protocol: str, transport: str = "tcp") -> dict:
    """The flow to ``port`` is named ``protocol`` with the verdict the registry implies; returns its row."""
    rows = classify(pcap, port, transport)
    assert rows, f"no {transport} flow to port {port} in {pcap}"
    named = [r for r in rows if r["network.protocol"] == protocol]
    assert named, [(r["network.protocol"], r["portclass.evidence.signature"]) for r in rows]
    assert {r["portclass.verdict"] for r in named} == {expected_verdict(reg, port, transport)}
    # the session itself: the readiness probe's connection may end inside the capture too (a late banner)
    return max(named, key=lambda r: r["network.packets"])


# ----------------------------------------------------------------------------- servers


def test_redis(reg, tmp_path) -> None:
    exe, cli = need("redis-server", "redis-cli")
    port = free_port()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    with server(cmd, port), capture(tmp_path / "redis.pcap", f"tcp port {port}") as pcap:
        out = subprocess.run([cli, "-p", str(port), "SET", "k", "portclass"], capture_output=True, text=True,
                             timeout=10)  # fmt: skip
        assert out.stdout.strip() == "OK"
    row = check(reg, pcap, port, "redis")
    assert row["portclass.evidence.signature"] == "redis-command"
    assert "RESP" in tshark_says(pcap, f"tcp.port=={port},resp")


def test_postgresql(reg, tmp_path) -> None:
    initdb, postgres, psql = need("initdb", "postgres", "psql")
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="portclass-pg-"))  # PostgreSQL refuses root: a directory nobody owns
    try:
        os.chmod(base, 0o755)
        if os.geteuid() == 0:
            shutil.chown(base, "nobody")
            pre = ["runuser", "-u", "nobody", "--"]
        else:
            pre = []
        data = base / "data"
        subprocess.run([*pre, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        cmd = [*pre, postgres, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
               "-c", f"unix_socket_directories={base}"]  # fmt: skip
        with server(cmd, port), capture(tmp_path / "pg.pcap", f"tcp port {port}") as pcap:
            out = subprocess.run(
                [psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-Atc", "select 6*7"],
                capture_output=True, text=True, timeout=30, env={**os.environ, "PGSSLMODE": "disable"},
            )  # fmt: skip
            assert out.stdout.strip() == "42", out.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
    row = check(reg, pcap, port, "postgresql")
    assert row["portclass.evidence.signature"] == "postgresql-startup"
    assert "PGSQL" in tshark_says(pcap, f"tcp.port=={port},pgsql")


def test_mariadb(reg, tmp_path) -> None:
    install, mariadbd, client = need("mariadb-install-db", "mariadbd", "mariadb")
    port = free_port()
    data = tmp_path / "data"
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=180)  # fmt: skip
    cmd = [mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
           f"--socket={tmp_path / 'sock'}", f"--pid-file={tmp_path / 'pid'}", "--user=root", "--skip-grant-tables",
           "--skip-log-error"]  # fmt: skip
    with server(cmd, port), capture(tmp_path / "maria.pcap", f"tcp port {port}") as pcap:
        out = subprocess.run([client, "-h", "127.0.0.1", "-P", str(port), "-u", "root", "--skip-ssl", "-Nse",
                              "select 6*7"], capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.stdout.strip() == "42", out.stderr
    row = check(reg, pcap, port, "mysql")
    assert row["portclass.evidence.signature"] == "mysql-greeting"
    assert row["portclass.evidence.direction"] == "server-to-client"
    assert "MySQL" in tshark_says(pcap, f"tcp.port=={port},mysql")


def test_openssh(reg, tmp_path) -> None:
    sshd, keygen, ssh = need("sshd", "ssh-keygen", "ssh")
    port = free_port()
    key = tmp_path / "host_ed25519"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory (tmpfiles.d at boot)
    cmd = [sshd, "-D", "-e", "-f", "/dev/null", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
           "-o", f"HostKey={key}", "-o", f"PidFile={tmp_path / 'pid'}", "-o", "UsePAM=no"]  # fmt: skip
    with server(cmd, port), capture(tmp_path / "ssh.pcap", f"tcp port {port}") as pcap:
        subprocess.run([ssh, "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", f"UserKnownHostsFile={tmp_path / 'known'}", "-o", "ConnectTimeout=10",
                        "nobody@127.0.0.1", "true"], capture_output=True, timeout=30)  # fmt: skip
    row = check(reg, pcap, port, "ssh")
    assert row["portclass.evidence.signature"] == "ssh-banner"
    version = subprocess.run([ssh, "-V"], capture_output=True, text=True).stderr.split(",")[0].strip()
    assert row["portclass.ssh.client_software"] == version  # "OpenSSH_9.2p1 Debian-2+deb12u3"
    assert row["portclass.ssh.server_software"].startswith(version.split()[0])
    assert "SSH" in tshark_says(pcap, f"tcp.port=={port},ssh") or "SSHv2" in tshark_says(pcap, f"tcp.port=={port},ssh")


def test_mosquitto(reg, tmp_path) -> None:
    broker, pub = need("mosquitto", "mosquitto_pub")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    with server([broker, "-c", str(conf)], port), capture(tmp_path / "mqtt.pcap", f"tcp port {port}") as pcap:
        subprocess.run([pub, "-h", "127.0.0.1", "-p", str(port), "-t", "portclass/test", "-m", "hello"],
                       check=True, timeout=30)  # fmt: skip
    row = check(reg, pcap, port, "mqtt")
    assert row["portclass.evidence.signature"] == "mqtt-connect"
    assert "MQTT" in tshark_says(pcap, f"tcp.port=={port},mqtt")


def _dns_query(sock: socket.socket, name: str, qtype: str, port: int) -> bytes:
    """One query from ``sock`` to 127.0.0.1:``port``; the raw answer."""
    from scapy.layers.dns import DNS, DNSQR

    sock.sendto(bytes(DNS(id=0x4242, rd=1, qd=[DNSQR(qname=name, qtype=qtype)])), ("127.0.0.1", port))
    return sock.recv(4096)


def test_dnsmasq_dns_and_dnscrypt_certificate_query(reg, tmp_path) -> None:
    (exe,) = need("dnsmasq")
    with port_in(20000, 49151, socket.SOCK_DGRAM) as probe_sock:  # below the clients' dynamic ports
        port = probe_sock.getsockname()[1]
    cmd = [exe, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}", "--listen-address=127.0.0.1",
           "--bind-interfaces", "--no-resolv", "--no-hosts", "--address=/example.test/192.0.2.7",
           "--txt-record=2.dnscrypt-cert.example.test,portclass", f"--pid-file={tmp_path / 'pid'}",
           "--user=root"]  # fmt: skip
    plain, crypt = port_in(49152, 65535, socket.SOCK_DGRAM), port_in(49152, 65535, socket.SOCK_DGRAM)
    with plain, crypt, server(cmd, 0) as proc, capture(tmp_path / "dns.pcap", f"udp port {port}") as pcap:
        for s in (plain, crypt):  # two client ports at once: two flows
            s.settimeout(0.5)
        for _ in range(50):  # dnsmasq binds UDP only: ask until it answers
            if proc.poll() is not None:
                pytest.fail(f"dnsmasq exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                answer = _dns_query(plain, "www.example.test", "A", port)
                break
            except TimeoutError:
                continue
        assert bytes([192, 0, 2, 7]) in answer
        assert b"portclass" in _dns_query(crypt, "2.dnscrypt-cert.example.test", "TXT", port)
    rows = classify(pcap, port, "udp")
    # one flow each; DNSCrypt's certificate query is DNS carrying DNSCrypt: the flow keeps both
    protos = sorted((r["network.protocol"], r["network.application"] or "") for r in rows)
    assert protos == [("dns", ""), ("dns", "dnscrypt")], [(r["source.port"], r["network.protocol"]) for r in rows]
    said = sorted((r["dns.question.name"], r["dns.question.type"]) for r in rows)
    assert said == [("2.dnscrypt-cert.example.test", "TXT"), ("www.example.test", "A")]
    want = expected_verdict(reg, port, "udp")
    assert {r["portclass.verdict"] for r in rows} == {want}
    assert "DNS" in tshark_says(pcap, f"udp.port=={port},dns")


def test_http_carrying_elasticsearch_keeps_both(reg, tmp_path) -> None:
    """A real HTTP client asking an Elasticsearch API path of a real HTTP server (Python's, answering as
    Elasticsearch does): the flow says HTTP carrying Elasticsearch, with the request it made."""
    import http.server
    import threading
    import urllib.request

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b'{"cluster_name":"portclass","status":"green"}'
            self.send_response(200)
            self.send_header("X-elastic-product", "Elasticsearch")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with capture(tmp_path / "es.pcap", f"tcp port {port}") as pcap:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_cluster/health", timeout=10) as r:
                assert b"green" in r.read()
    finally:
        httpd.shutdown()
        httpd.server_close()
    rows = [r for r in classify(pcap, port) if r["portclass.evidence.signature"]]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["network.protocol"], row["network.application"]) == ("http", "elasticsearch")
    assert (row["http.request.method"], row["url.original"]) == ("GET", "/_cluster/health")
    assert "HTTP" in tshark_says(pcap, f"tcp.port=={port},http")
