"""TLS ClientHello fields (classifier.evidence.ja4): the JA4 client fingerprint and the offered ALPN list.

Checked three ways: against JA4 built by this test from Wireshark's dissection of the same packets
(tshark 4.0 has no JA4 field: the test composes it from tshark's cipher, extension, signature
algorithm, supported_versions, SNI and ALPN fields, per FoxIO's spec); against nDPI's JA4 in the
corpus's result files (nDPI departs from the spec in two places, both checked against nDPI's own
fields: ``d`` whenever the host is not a numeric address, and its own ALPN characters (``ht`` for
``http/1.1`` where the spec says ``h1``)); and on a
real handshake, openssl's client to openssl's server on loopback.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.api import classify
from tests.conftest import ROOT
from tests.shared import shared
from tests.test_evidence_servers import capture, free_port, need, server


def _hexes(text: str) -> list[int]:
    return [int(x, 16) if x.startswith("0x") else int(x) for x in text.split(",") if x]


def _grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def _h12(values: list[str]) -> str:
    text = values[0] if len(values) == 1 else "_".join(v for v in values if v)
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def spec_ja4(ciphers: list[int], exts: list[int], sigalgs: list[int], versions: list[int], legacy: int,
             alpn: str | None) -> str:  # fmt: skip
    """JA4 from dissected fields, as FoxIO's spec composes it."""
    ciphers = [c for c in ciphers if not _grease(c)]
    exts = [e for e in exts if not _grease(e)]
    vers = [v for v in versions if not _grease(v)]
    v = max(vers) if vers else legacy
    ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(v, "00")
    if alpn:
        a0, a1 = alpn[0], alpn[-1]
        plain = a0.isascii() and a0.isalnum() and a1.isascii() and a1.isalnum()
        two = a0 + a1 if plain else alpn.encode().hex()[0] + alpn.encode().hex()[-1]
    else:
        two = "00"
    a = f"t{ver}{'d' if 0 in exts else 'i'}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{two}"
    b = _h12([",".join(f"{c:04x}" for c in sorted(ciphers))])
    rest = ",".join(f"{e:04x}" for e in sorted(e for e in exts if e not in (0, 0x10)))
    sig = ",".join(f"{s:04x}" for s in sigalgs if not _grease(s))
    c = _h12([rest, sig]) if rest or sig else "000000000000"
    return f"{a}_{b}_{c}"


_FIELDS = ("ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tls.handshake.ciphersuite",
           "tls.handshake.extension.type",
           "tls.handshake.sig_hash_alg", "tls.handshake.extensions.supported_version", "tls.handshake.version",
           "tls.handshake.extensions_alpn_str", "tls.handshake.sig_hash_alg_len")  # fmt: skip


def tshark_hellos(pcap: Path) -> dict[tuple, tuple[str, str]]:
    """(client ip, port, server ip, port) -> (JA4 from tshark's dissection, offered ALPN) per ClientHello."""
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", "tls.handshake.type == 1 && !tcp.analysis.retransmission",
           "-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
           "-o", "tcp.desegment_tcp_streams:FALSE"]  # fmt: skip
    for f in _FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        src, sport, dst, dport, cs, ext, sig, sv, ver, alpn, sig_lens = line.split("|")
        if not src or not sport or "," in ver:  # one ClientHello per packet (IPv4, TCP)
            continue
        types, algs = _hexes(ext), _hexes(sig)
        # signature_algorithms (13), delegated_credentials (34) and signature_algorithms_cert (50) share
        # tshark's field: cut it by their list lengths, in extension order
        lists = [e for e in types if e in (13, 34, 50)]
        if len(lists) > 1:
            lens = [n // 2 for n in _hexes(sig_lens)]
            at = sum(lens[: lists.index(13)])
            algs = algs[at : at + lens[lists.index(13)]]
        ja4 = spec_ja4(_hexes(cs), types, algs, _hexes(sv), _hexes(ver)[0], alpn.split(",")[0] or None)
        got[(src, int(sport), dst, int(dport))] = (ja4, alpn)
    return got


def mine(pcap: Path, reg=None) -> dict[tuple, tuple[str | None, str | None]]:
    rows = classify(pcap, reg) if reg is not None else classify([pcap])
    return {
        (r["source.ip"], r["source.port"], r["destination.ip"], r["destination.port"]):
            (r["portclass.tls.client.ja4"], r["portclass.tls.client.alpn"])
        for r in rows
        if r["network.transport"] == "tcp"
    }  # fmt: skip


@pytest.mark.parametrize("name", ["443-curl.pcap", "android.pcap", "anydesk.pcapng", "KakaoTalk_chat.pcap",
                                  "sites.pcapng", "teams.pcap"])  # fmt: skip
def test_ja4_and_alpn_match_tsharks_dissection(reg, name) -> None:
    """Every ClientHello tshark dissects has its flow, the same JA4 and the same ALPN list in portclass
    (KakaoTalk_chat.pcap holds a hello without extensions, which once got no JA4)."""
    pcap = shared("captures", "ndpi", "pcap", name)  # (a missing capture fails: SharedDataMissing)
    theirs = tshark_hellos(pcap)
    ours = mine(pcap, reg)
    assert theirs, name
    for k in theirs:
        assert k in ours, k
        assert ours[k][0] == theirs[k][0], k
        assert (ours[k][1] or "") == theirs[k][1], k


def _ndpi_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ndpi_agreement

    return ndpi_agreement


def test_ja4_agrees_with_ndpi_on_the_corpus(reg) -> None:
    """Every joined flow where both give a JA4: equal, but for nDPI's two documented departures (and
    the hash of no extensions: nDPI's SHA-256 of nothing, FoxIO's 000000000000)."""
    nd = _ndpi_module()
    result = shared("captures", "ndpi", "result")
    line_re = re.compile(r"^\s+\d+\s+TCP\s+(\S+)\s+(?:<->|->)\s+(\S+)\s.*\[JA4: ([^\]]+)\]")
    alpn_re = re.compile(r"\[\(Advertised\) ALPNs: ([^;\]]*)")
    compared = same = 0
    for out in sorted(result.glob("*.out")):
        text = out.read_text(errors="replace")
        if "[JA4: " not in text:
            continue
        theirs: dict[tuple, list[tuple[str, str | None, bool]]] = {}
        for line in text.splitlines():
            m = line_re.match(line)
            if m:
                a, b = nd._endpoint(m[1]), nd._endpoint(m[2])
                al = alpn_re.search(line)
                sni = "[Hostname/SNI: " in line
                theirs.setdefault(tuple(sorted((a, b))), []).append((m[3], al[1] if al else None, sni))
        ours: dict[tuple, list[str | None]] = {}
        for (sip, sp, dip, dp), (ja4, _) in mine(shared("captures", "ndpi", "pcap", out.name[:-4]), reg).items():
            ours.setdefault(tuple(sorted(((sip, sp), (dip, dp)))), []).append(ja4)
        for k, v in theirs.items():
            if len(v) != 1 or len(ours.get(k, [])) != 1 or not ours[k][0]:
                continue
            (ja4, alpn, sni), my = v[0], ours[k][0]
            compared += 1
            if ja4.endswith("_e3b0c44298fc"):  # nDPI hashes an empty extension list; FoxIO's spec writes zeros
                ja4 = ja4[:-12] + "000000000000"
            assert my[:3] + my[4:8] + my[10:] == ja4[:3] + ja4[4:8] + ja4[10:], (out.name, k, my, ja4)
            assert my[3] == ("d" if sni else "i"), (out.name, k)
            if alpn:
                plain = alpn[0].isalnum() and alpn[-1].isalnum()
                assert my[8:10] == (alpn[0] + alpn[-1] if plain else alpn.encode().hex()[0] + alpn.encode().hex()[-1])
            same += my == ja4
    assert compared >= 400, compared
    assert same >= compared * 0.75, (same, compared)


def test_real_openssl_handshake_gives_sni_application_alpn_and_ja4(tmp_path) -> None:
    (openssl,) = need("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=portclass.test"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    port = free_port()
    cmd = [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
           "-alpn", "h2,http/1.1", "-naccept", "2", "-quiet"]  # fmt: skip
    with server(cmd, port), capture(tmp_path / "tls.pcap", f"tcp port {port}") as pcap:
        subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "media.whatsapp.net",
                        "-alpn", "h2,http/1.1"], input="", capture_output=True, text=True, timeout=30)  # fmt: skip
    rows = [r for r in classify([pcap]) if r["destination.port"] == port and r["portclass.tls.client.ja4"]]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["network.protocol"] == "tls"
    assert row["tls.client.server_name"] == "media.whatsapp.net"
    assert row["network.application"] == "whatsapp"  # TLS carrying an application known by its server name
    assert row["portclass.tls.client.alpn"] == "h2,http/1.1"
    theirs = tshark_hellos(pcap)
    k = (row["source.ip"], row["source.port"], row["destination.ip"], row["destination.port"])
    assert row["portclass.tls.client.ja4"] == theirs[k][0]
    assert re.fullmatch(r"t13d\d{4}h2_[0-9a-f]{12}_[0-9a-f]{12}", row["portclass.tls.client.ja4"])


def test_ja4_of_a_hello_without_extensions() -> None:
    """A ClientHello that ends after its compression methods (allowed: RFC 5246 7.4.1.2) has a JA4: no
    extensions count 00 and hash to zeros (it once got none: KakaoTalk_chat.pcap has one)."""
    import numpy as np

    from classifier.evidence.ja4 import client_hello

    body = b"\x03\x01" + bytes(range(32)) + b"\x00" + b"\x00\x04\x00\x2f\x00\x35" + b"\x01\x00"
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    rec = b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs
    ja4, alpn = client_hello(np.frombuffer(rec, np.uint8), np.array([0]), np.array([len(rec)]))
    want = spec_ja4([0x2F, 0x35], [], [], [], 0x0301, None)
    assert want.startswith("t10i020000_") and want.endswith("_000000000000")
    assert ja4[0].decode() == want and alpn[0] == b""
