"""The VPN records on traffic of the real thing: an OpenVPN or WireGuard pair in network namespaces.

Each test makes two network namespaces joined by a veth pair (names unique to the run, removed
at teardown whatever happens), starts Debian's ``openvpn`` (TLS mode, a PKI the test makes with
openssl) or ``wireguard-go`` (keys from ``wg genkey``) on both sides, pings through the tunnel,
and captures the veth with tcpdump inside the server's namespace.  portclass must name the
tunnel's flow from its handshake, with the verdict the registry implies for the port (OpenVPN
on 443/tcp: a mismatch against https), and count the flow's packets and bytes as tshark does;
tshark, told the port, names the same protocol.  Without a binary or without root a test skips
with the reason, outside CI only (as tests/test_evidence_servers.py does).
"""

from __future__ import annotations

import os
import secrets
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_evidence_servers import expected_verdict, need, running, tshark_says

SERVER_IP, CLIENT_IP = "10.254.0.1", "10.254.0.2"  # the veth pair's ends, inside the test's namespaces only
TUNNEL_NET, TUNNEL_SERVER = "10.254.8.0", "10.254.8.1"  # the tunnel's own subnet (server side first)


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by a veth pair: ``server`` holds ``server_dev`` at SERVER_IP."""

    server: str
    client: str
    server_dev: str
    ip: str  # the binaries' paths (Debian keeps ip in /usr/sbin)
    ping_bin: str
    tcpdump_bin: str

    def run(self, ns: str, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside namespace ``ns`` (checked, output captured)."""
        return subprocess.run([self.ip, "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout,
                              check=True)  # fmt: skip

    def start(self, ns: str, *cmd: str, log: Path) -> subprocess.Popen:
        """Start ``cmd`` inside namespace ``ns``, its output into ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen([self.ip, "netns", "exec", ns, *cmd], stdout=out, stderr=subprocess.STDOUT)

    def ping(self, ns: str, to: str, count: int = 3) -> int:
        """Ping ``to`` from ``ns``; how many answers came back."""
        cmd = [self.ip, "netns", "exec", ns, self.ping_bin, "-n", "-c", str(count), "-i", "0.2", "-W", "2", to]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return int(out.stdout.split(" received")[0].rsplit(" ", 1)[-1]) if " received" in out.stdout else 0


@pytest.fixture()
def pair() -> Iterator[Pair]:
    """A fresh server/client namespace pair with a veth between them; both removed at teardown."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("making network namespaces needs root (CAP_SYS_ADMIN)")
    ip, ping, tcpdump = need("ip", "ping", "tcpdump")
    tag = f"pcv{os.getpid() % 10000}{secrets.token_hex(2)}"  # at most 15 characters with the suffixes
    server, client = f"{tag}s", f"{tag}c"
    made: list[str] = []
    try:
        for ns in (server, client):
            subprocess.run([ip, "netns", "add", ns], check=True, capture_output=True, timeout=10)
            made.append(ns)
        steps = [
            [ip, "link", "add", f"{tag}a", "netns", server, "type", "veth", "peer", "name", f"{tag}b",
             "netns", client],
            [ip, "-n", server, "addr", "add", f"{SERVER_IP}/30", "dev", f"{tag}a"],
            [ip, "-n", client, "addr", "add", f"{CLIENT_IP}/30", "dev", f"{tag}b"],
            *([ip, "-n", ns, "link", "set", dev, "up"]
              for ns, dev in ((server, f"{tag}a"), (client, f"{tag}b"), (server, "lo"), (client, "lo"))),
        ]  # fmt: skip
        for cmd in steps:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=10)
        yield Pair(server, client, f"{tag}a", ip, ping, tcpdump)
    finally:
        for ns in made:  # removing a namespace removes the veth end inside it, so the pair
            subprocess.run([ip, "netns", "del", ns], capture_output=True, timeout=10)


def wait_log(log: Path, text: str, procs: tuple[subprocess.Popen, ...], timeout: float = 15) -> None:
    """Wait until ``text`` appears in ``log`` (fail with the log if a process died or time ran out)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    pytest.fail(f"no {text!r} in {log.name}:\n{log.read_text(errors='replace')[-2000:]}")


def _grow(pair: Pair, path: Path, size: int) -> None:
    """Ping the server's veth end until the capture file grows past ``size`` bytes."""
    for _ in range(50):
        pair.ping(pair.client, SERVER_IP, count=1)
        if path.exists() and path.stat().st_size > size:
            return
    raise TimeoutError("tcpdump wrote no packet")


@contextmanager
def capture(pair: Pair, path: Path) -> Iterator[Path]:
    """tcpdump on the server's veth end into ``path`` while the block runs (every packet is in the file
    once the block ends: a probe ping after the traffic has reached it)."""
    proc = subprocess.Popen(
        [pair.ip, "netns", "exec", pair.server, pair.tcpdump_bin, "-i", pair.server_dev, "--immediate-mode", "-U", "-n",
         "-s", "0", "-w", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        if "listening" not in line:
            pytest.fail(f"tcpdump cannot capture in the namespace: {line.strip()}")
        _grow(pair, path, 24)
        yield path
        _grow(pair, path, path.stat().st_size)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def flow_rows(reg, pcap: Path, port: int, transport: str) -> list[dict]:
    """portclass's rows of the flows to ``port`` (the registry given, as the verdict is checked against it)."""
    from classifier.api import classify

    return [r for r in classify([pcap], reg) if r["destination.port"] == port and r["network.transport"] == transport]


def tshark_counts(pcap: Path, port: int, transport: str) -> tuple[int, int]:
    """Packets and frame bytes tshark counts on ``transport`` port ``port``."""
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", f"{transport}.port=={port}", "-T", "fields", "-e", "frame.len"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return len(out), sum(map(int, out))


def client_port(reg, transport: str) -> int:
    """A client port no registry name holds, in RFC 6335's dynamic range: portclass orients a UDP flow
    by the registry first, so a kernel-chosen client port that happens to be assigned would be taken
    for the server (the namespaces are fresh: any port is free there)."""
    return next(p for p in range(60000, 65536) if not any(True for _ in reg.names_on(transport, p)))


def check_tunnel(reg, pcap: Path, port: int, transport: str, protocol: str) -> dict:
    """The one flow to ``port`` is named ``protocol`` with the registry's verdict and tshark's counts."""
    rows = flow_rows(reg, pcap, port, transport)
    assert len(rows) == 1, [(r["source.port"], r["network.protocol"], r["network.packets"]) for r in rows]
    row = rows[0]
    assert row["network.protocol"] == protocol, (row["network.protocol"], row["portclass.evidence.signature"])
    carried = any(r.name == protocol for r in reg.names_on(transport, port))
    assert row["portclass.verdict"] == ("consistent" if carried else expected_verdict(reg, port, transport))
    assert (row["network.packets"], row["network.bytes"]) == tshark_counts(pcap, port, transport)
    return row


# ----------------------------------------------------------------------------- OpenVPN


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server and a client certificate (P-256, two days) made with openssl in ``d``."""
    (openssl,) = need("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2",
        "-subj", "/CN=portclass test CA")  # fmt: skip
    for name, eku in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = d / f"{name}.ext"
        ext.write_text(f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage={eku}\n")
        run("req", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"), "-subj", f"/CN={name}")
        run("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-set_serial", str(secrets.randbits(63)), "-days", "2", "-extfile", str(ext),
            "-out", str(d / f"{name}.crt"))  # fmt: skip
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


OPENVPN_CASES = [  # transport, server port, control-channel protection
    pytest.param("udp", 1194, "", id="udp-1194"),
    pytest.param("udp", 40123, "tls-auth", id="udp-40123-tls-auth"),
    pytest.param("tcp", 443, "", id="tcp-443"),
    pytest.param("tcp", 443, "tls-auth", id="tcp-443-tls-auth"),
    pytest.param("udp", 443, "tls-crypt", id="udp-443-tls-crypt"),
    pytest.param("tcp", 1194, "tls-crypt", id="tcp-1194-tls-crypt"),
    pytest.param("udp", 40123, "tls-crypt-v2", id="udp-40123-tls-crypt-v2"),
    pytest.param("tcp", 443, "tls-crypt-v2", id="tcp-443-tls-crypt-v2"),
]


@pytest.mark.parametrize(("transport", "port", "guard"), OPENVPN_CASES)
def test_openvpn_pair(reg, pair: Pair, tmp_path: Path, transport: str, port: int, guard: str) -> None:
    (openvpn,) = need("openvpn")
    pki = make_pki(tmp_path)
    common = ["--dev", "tun", "--proto", transport, "--ca", str(pki["ca.crt"]), "--data-ciphers", "AES-256-GCM",
              "--verb", "3", "--script-security", "0"]  # fmt: skip
    extra: dict[str, list[str]] = {"server": [], "client": []}
    if guard == "tls-crypt-v2":  # a server key, and a client key wrapped by it
        server_key, client_key = tmp_path / "v2-server.key", tmp_path / "v2-client.key"
        subprocess.run([openvpn, "--genkey", "tls-crypt-v2-server", str(server_key)], check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        subprocess.run([openvpn, "--tls-crypt-v2", str(server_key), "--genkey", "tls-crypt-v2-client",
                        str(client_key)], check=True, capture_output=True, timeout=30)  # fmt: skip
        extra = {"server": ["--tls-crypt-v2", str(server_key)], "client": ["--tls-crypt-v2", str(client_key)]}
    elif guard:
        key = tmp_path / "ta.key"
        subprocess.run([openvpn, "--genkey", "secret", str(key)], check=True, capture_output=True, timeout=30)
        extra = {side: [f"--{guard}", str(key), *([d] if guard == "tls-auth" else [])]
                 for side, d in (("server", "0"), ("client", "1"))}  # fmt: skip
    server_cmd = [openvpn, *common, "--server", TUNNEL_NET, "255.255.255.0", "--topology", "subnet",
                  "--local", SERVER_IP, "--port", str(port), "--cert", str(pki["server.crt"]),
                  "--key", str(pki["server.key"]), "--dh", "none", *extra["server"]]  # fmt: skip
    client_cmd = [openvpn, *common, "--client", "--remote", SERVER_IP, str(port), "--lport",
                  str(client_port(reg, transport)),
                  "--remote-cert-tls", "server", "--cert", str(pki["client.crt"]), "--key", str(pki["client.key"]),
                  *extra["client"]]  # fmt: skip
    slog, clog = tmp_path / "server.log", tmp_path / "client.log"
    with capture(pair, tmp_path / "openvpn.pcap") as pcap:
        with running(pair.start(pair.server, *server_cmd, log=slog)) as srv:
            wait_log(slog, "Initialization Sequence Completed", (srv,))
            with running(pair.start(pair.client, *client_cmd, log=clog)) as cli:
                wait_log(clog, "Initialization Sequence Completed", (srv, cli))
                assert pair.ping(pair.client, TUNNEL_SERVER) == 3
    row = check_tunnel(reg, pcap, port, transport, "openvpn")
    sfx = "-tcp" if transport == "tcp" else ""
    assert row["portclass.evidence.signature"] in {f"openvpn-server-reset{sfx}", f"openvpn-client-reset{sfx}"}
    if port == 443:
        assert row["portclass.verdict"] == "mismatch"  # against https, which is what 443/tcp registers
        assert "https" in row["portclass.service"]
    assert "OpenVPN" in tshark_says(pcap, f"{transport}.port=={port},openvpn")


def tls_crypt_v2_resets(session: int = 0x9E8D4B1BCB995DE1, when: int = 0x6B09F0E9) -> tuple[bytes, bytes]:
    """The first packet each way of an OpenVPN 2.6 tls-crypt-v2 handshake, laid out as the real pair
    above sends them over UDP: the client's v3 reset (session id, packet id 0x0f000001, time, then
    ciphertext and the wrapped client key, whose last two bytes are its length, 299) and the
    server's 72-byte reset (packet id 1, time, ciphertext)."""
    head = struct.pack("!QII", session, 0x0F000001, when)
    client = b"\x50" + head + b"\xa5" * (353 - 17 - 2) + struct.pack("!H", 299)
    server = b"\x40" + struct.pack("!QII", session ^ 1, 1, when) + b"\x5a" * (72 - 17)
    return client, server


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_tls_crypt_v2_resets_are_openvpn(transport: str) -> None:
    """Regression: tls-crypt-v2 handshakes (the client's reset with its wrapped key, the server's 72-byte
    reset) were named nothing, on UDP and on TCP (where each packet has a 2-byte length first)."""
    from classifier.capture.columns import PROTO_TCP, PROTO_UDP
    from classifier.evidence import SIG_NAMES, scan_bytes
    from classifier.evidence.match import SIG_CONFIRM_ONLY

    client, server = tls_crypt_v2_resets()
    assert (len(client), len(server)) == (353, 72)
    proto, sfx = (PROTO_TCP, "-tcp") if transport == "tcp" else (PROTO_UDP, "")
    if transport == "tcp":
        client, server = (struct.pack("!H", len(x)) + x for x in (client, server))
    codes = scan_bytes([client, server, client[:-1] + b"\x2c", server + b"\x00"], proto)
    assert [SIG_NAMES[c] for c in codes[:2]] == [f"openvpn-client-reset{sfx}", f"openvpn-server-reset-alone{sfx}"]
    assert not SIG_CONFIRM_ONLY[codes[0]]  # not only the weak any-length row: the v3 reset itself
    assert SIG_CONFIRM_ONLY[codes[2]] or not codes[2]  # a key length that does not fit: weak evidence at most
    assert not codes[3]  # one byte more than the server's reset: nothing


# ----------------------------------------------------------------------------- WireGuard


def need_tun() -> None:
    """wireguard-go's tunnel is a TUN device: skip (fail in CI) without /dev/net/tun."""
    if not Path("/dev/net/tun").exists():
        msg = "wireguard-go needs /dev/net/tun, which this machine lacks"
        if os.environ.get("CI"):
            raise RuntimeError(msg)
        pytest.skip(msg)


@contextmanager
def wireguard(pair: Pair, ns: str, name: str, log: Path) -> Iterator[subprocess.Popen]:
    """wireguard-go in the foreground as interface ``name`` of namespace ``ns`` (ready once its control
    socket exists); stopped at the end of the block, its socket removed."""
    (exe,) = need("wireguard-go")
    sock = Path("/var/run/wireguard") / f"{name}.sock"  # one directory for every namespace: names are unique
    with log.open("wb") as out:
        proc = subprocess.Popen([pair.ip, "netns", "exec", ns, exe, "-f", name], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "LOG_LEVEL": "debug", "WG_PROCESS_FOREGROUND": "1"})  # fmt: skip
    with running(proc):
        try:
            end = time.monotonic() + 10
            while not sock.exists():
                if proc.poll() is not None or time.monotonic() > end:
                    pytest.fail(f"wireguard-go did not start:\n{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
            yield proc
        finally:
            sock.unlink(missing_ok=True)


WIREGUARD_PORTS = [pytest.param(51820, id="udp-51820"), pytest.param(443, id="udp-443")]


@pytest.mark.parametrize("port", WIREGUARD_PORTS)
def test_wireguard_pair(reg, pair: Pair, tmp_path: Path, port: int) -> None:
    need_tun()
    (wg,) = need("wg")
    keys = {}
    for side in ("server", "client"):
        private = subprocess.run([wg, "genkey"], capture_output=True, text=True, check=True, timeout=10).stdout
        public = subprocess.run([wg, "pubkey"], input=private, capture_output=True, text=True, check=True,
                                timeout=10).stdout  # fmt: skip
        (tmp_path / f"{side}.key").write_text(private)
        keys[side] = public.strip()
    tag = pair.server[:-1]
    sides = {  # namespace, interface, tunnel address, the peer's arguments
        "server": (pair.server, f"{tag}ws", TUNNEL_SERVER, [keys["client"], "allowed-ips", "10.254.8.2/32"]),
        "client": (pair.client, f"{tag}wc", "10.254.8.2",
                   [keys["server"], "allowed-ips", "10.254.8.1/32", "endpoint", f"{SERVER_IP}:{port}"]),
    }  # fmt: skip
    with capture(pair, tmp_path / "wireguard.pcap") as pcap:
        with (wireguard(pair, pair.server, sides["server"][1], tmp_path / "server.log"),
              wireguard(pair, pair.client, sides["client"][1], tmp_path / "client.log")):  # fmt: skip
            for side, (ns, dev, addr, peer) in sides.items():
                listen = ["listen-port", str(port if side == "server" else client_port(reg, "udp"))]
                pair.run(ns, wg, "set", dev, "private-key", str(tmp_path / f"{side}.key"), *listen, "peer", *peer)
                pair.run(ns, pair.ip, "addr", "add", f"{addr}/24", "dev", dev)
                pair.run(ns, pair.ip, "link", "set", dev, "up")
            assert pair.ping(pair.client, TUNNEL_SERVER) == 3
            shown = pair.run(pair.client, wg, "show", sides["client"][1], "latest-handshakes").stdout
            assert int(shown.split()[-1]) > 0  # the handshake really happened
    row = check_tunnel(reg, pcap, port, "udp", "wireguard")
    assert row["portclass.evidence.signature"] in {"wireguard-initiation", "wireguard-response"}
    assert "WireGuard" in tshark_says(pcap, f"udp.port=={port},wg")
