"""Payload signatures: each table row recognises its protocol in a scapy-built capture, near misses do not.

Every case is one packet of its own flow in a pcap written with scapy and read back by the
capture reader, so the prefix gather, the first-byte buckets and the walks all run on real
chunk layouts (payloads at odd offsets, Ethernet padding, the chunk's last bytes).
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier.capture.columns import PROTO_TCP, PROTO_UDP
from classifier.capture.reader import read_batches
from classifier.evidence import SIG_NAMES, SIGNATURES, scan, scan_bytes
from classifier.evidence.match import COMPILED, PREFIX_BYTES, prefix_matrix, scan_payloads
from classifier.evidence.table import PROTOCOLS, LenField, Lit, OneOf, Signature
from classifier.evidence.walk import MAX_LABELS, contains_any, dns_first_name, tls_server_name

ROOT = Path(__file__).resolve().parents[1]


def _make_captures():
    """captures/make_captures.py as a module (its TLS ClientHello/ServerHello builders)."""
    spec = importlib.util.spec_from_file_location("make_captures_for_tests", ROOT / "captures" / "make_captures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


MC = _make_captures()


# ----------------------------------------------------------------------------- payload builders


def dns_query(name: str = "example.com", qtype: str = "A") -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    return bytes(DNS(id=7, rd=1, qd=[DNSQR(qname=name, qtype=qtype)]))


def mdns_announcement() -> bytes:
    from scapy.layers.dns import DNS, DNSRR

    return bytes(DNS(id=0, qr=1, aa=1, qd=[], an=[DNSRR(rrname="printer.local", type="A", rdata="192.0.2.7")]))


def ntp(mode: int = 3, version: int = 4) -> bytes:
    from scapy.layers.ntp import NTP

    return bytes(NTP(version=version, mode=mode))


def snmp_get(community: str = "public") -> bytes:
    from scapy.asn1.asn1 import ASN1_OID
    from scapy.layers.snmp import SNMP, SNMPget, SNMPvarbind

    pdu = SNMPget(varbindlist=[SNMPvarbind(oid=ASN1_OID("1.3.6.1.2.1.1.1.0"))])
    return bytes(SNMP(community=community, PDU=pdu))


def snmp_long() -> bytes:
    """An SNMP message over 127 bytes (two-byte BER length: 0x81 LL)."""
    return snmp_get("c" * 140)


def mqtt_connect(name: bytes = b"MQTT", level: int = 4, client: bytes = b"sensor-1") -> bytes:
    from scapy.contrib.mqtt import MQTT, MQTTConnect

    return bytes(MQTT() / MQTTConnect(protoname=name, protolevel=level, clientId=client))


def mqtt_publish() -> bytes:
    from scapy.contrib.mqtt import MQTT, MQTTPublish

    return bytes(MQTT() / MQTTPublish(topic=b"a/b", value=b"MQTT"))


def modbus_read() -> bytes:
    from scapy.contrib.modbus import ModbusADURequest, ModbusPDU03ReadHoldingRegistersRequest

    return bytes(
        ModbusADURequest(transId=9, unitId=1) / ModbusPDU03ReadHoldingRegistersRequest(startAddr=0, quantity=4)
    )


def nbns_query() -> bytes:
    from scapy.layers.netbios import NBNSHeader, NBNSQueryRequest

    return bytes(NBNSHeader(NAME_TRN_ID=0x4242) / NBNSQueryRequest(QUESTION_NAME="WORKGROUP"))


def nb_datagram() -> bytes:
    from scapy.layers.netbios import NBTDatagram

    return bytes(NBTDatagram(SourceName="HOST", DestinationName="WORKGROUP")) + b"\xffSMB" + bytes(40)


def smb2_negotiate() -> bytes:
    from scapy.layers.netbios import NBTSession
    from scapy.layers.smb2 import SMB2_Header

    return bytes(NBTSession() / SMB2_Header()) + bytes(36)


def smb1_negotiate() -> bytes:
    from scapy.layers.netbios import NBTSession
    from scapy.layers.smb import SMB_Header

    return bytes(NBTSession() / SMB_Header()) + b"\x00\x0c\x00\x02NT LM 0.12\x00"


def rdp_request(cookie: bool = True) -> bytes:
    user = (b"Cookie: mstshash=alice\r\n" if cookie else b"") + struct.pack("<BBHI", 1, 0, 8, 3)
    x224 = struct.pack("!BBHHB", 6 + len(user), 0xE0, 0, 0, 0) + user
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def rdp_confirm() -> bytes:
    neg = struct.pack("<BBHI", 2, 0x1F, 8, 2)
    x224 = struct.pack("!BBHHB", 6 + len(neg), 0xD0, 0, 0x1234, 0) + neg
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def s7_request() -> bytes:
    """ISO-on-TCP (S7comm) connection request: TPKT + X.224 CR with TSAP parameters, not RDP."""
    params = b"\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a"
    x224 = struct.pack("!BBHHB", 6 + len(params), 0xE0, 0, 1, 0) + params
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def quic_initial(version: bytes = b"\x00\x00\x00\x01", dcid_len: int = 8) -> bytes:
    return b"\xc3" + version + bytes([dcid_len]) + bytes(range(dcid_len)) + b"\x00\x00\x44\xd0" + bytes(1180)


def dnscrypt_query(tcp: bool = False) -> bytes:
    q = dns_query("2.dnscrypt-cert.example.org", "TXT")
    return struct.pack("!H", len(q)) + q if tcp else q


def kerberos_as_req() -> bytes:
    body = b"\xa1\x03\x02\x01\x05\xa2\x03\x02\x01\x0a" + bytes(120)
    seq = b"\x30\x81" + bytes([len(body)]) + body
    return b"\x6a\x81" + bytes([len(seq)]) + seq


def ldap_bind(msgid: int = 1) -> bytes:
    op = b"\x60\x07\x02\x01\x03\x04\x00\x80\x00"
    body = b"\x02\x01" + bytes([msgid]) + op
    return b"\x30" + bytes([len(body)]) + body


def amqp_start() -> bytes:
    args = bytes(20)
    payload = b"\x00\x0a\x00\x0a" + args
    return b"\x01\x00\x00" + struct.pack("!I", len(payload)) + payload + b"\xce"


# (case, transport, payload, expected signature name): protocols added with the protocol table
MORE_CASES: list[tuple[str, int, bytes, str | None]] = [
    ("dnscrypt-cert", PROTO_UDP, dnscrypt_query(), "dnscrypt-cert-query"),
    ("dnscrypt-cert-tcp", PROTO_TCP, dnscrypt_query(True), "dnscrypt-cert-query-tcp"),
    ("dns-txt-not-dnscrypt", PROTO_UDP, dns_query("3.dnscrypt-cert.example.org", "TXT"), "dns"),
    ("irc-nick", PROTO_TCP, b"NICK alice\r\nUSER alice 0 * :Alice\r\n", "irc-register"),
    ("irc-user-then-nick", PROTO_TCP, b"USER alice 0 * :Alice\r\nNICK alice\r\n", "irc-user"),
    ("irc-server", PROTO_TCP, b":irc.example.net NOTICE * :*** Looking up your hostname\r\n", "irc-server"),
    ("ldap-bind", PROTO_TCP, ldap_bind(), "ldap"),
    ("ldap-not-modbus", PROTO_TCP, b"\x30\x84\x00\x00\x00\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00",
     "ldap"),
    ("kerberos-udp", PROTO_UDP, kerberos_as_req(), "kerberos"),
    ("kerberos-tcp", PROTO_TCP, struct.pack("!I", len(kerberos_as_req())) + kerberos_as_req(), "kerberos"),
    ("amqp-header", PROTO_TCP, b"AMQP\x00\x00\x09\x01", "amqp-header"),
    ("amqp-start", PROTO_TCP, amqp_start(), "amqp-connection-start"),
    ("bgp-open", PROTO_TCP, b"\xff" * 16 + b"\x00\x1d\x01\x04" + bytes(9), "bgp"),
    ("rfb", PROTO_TCP, b"RFB 003.008\n", "rfb"),
    ("rsync", PROTO_TCP, b"@RSYNCD: 31.0\n", "rsync"),
    ("zabbix", PROTO_TCP, b"ZBXD\x01" + struct.pack("<Q", 10) + b"agent.ping", "zabbix"),
    ("gnutella", PROTO_TCP, b"GNUTELLA CONNECT/0.6\r\n\r\n", "gnutella"),
    ("roughtime", PROTO_UDP, b"ROUGHTIM" + bytes(1016), "roughtime"),
    ("telnet", PROTO_TCP, b"\xff\xfd\x18\xff\xfd\x20", "telnet-iac"),
    ("rtsp-response", PROTO_TCP, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n", "rtsp-response"),
    ("http-ntlm", PROTO_TCP, b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: NTLM TlRMTVNTUAABAAAA\r\n\r\n",
     "http-ntlm-auth"),
    ("elasticsearch-req", PROTO_TCP, b"GET /_cluster/health HTTP/1.1\r\nHost: x\r\n\r\n", "elasticsearch-request"),
    ("elasticsearch-resp", PROTO_TCP, b"HTTP/1.1 200 OK\r\nX-elastic-product: Elasticsearch\r\n\r\n",
     "elasticsearch-response"),
    ("pg-ssl", PROTO_TCP, b"\x00\x00\x00\x08\x04\xd2\x16\x2f", "postgresql-ssl-request"),
    ("pg-startup", PROTO_TCP, struct.pack("!II", 32, 196608) + b"user\x00alice\x00database\x00db\x00\x00",
     "postgresql-startup"),
    ("pg-auth", PROTO_TCP, b"R\x00\x00\x00\x08\x00\x00\x00\x00", "postgresql-auth"),
    ("wireguard-cookie", PROTO_UDP, b"\x03\x00\x00\x00" + bytes(60), "wireguard-cookie"),
    ("vxlan", PROTO_UDP, b"\x08\x00\x00\x00\x00\x00\x2a\x00" + bytes(12) + b"\x08\x00" + b"\x45" + bytes(40), "vxlan"),
    ("l2tp", PROTO_UDP, b"\xc8\x02\x00\x14" + bytes(16), "l2tp-control"),
    ("opcua-hello", PROTO_TCP, b"HELF" + struct.pack("<I", 32) + bytes(24), "opcua"),
    ("modbus-after-ldap", PROTO_TCP, b"\x00\x05\x00\x00\x00\x06\x01\x03\x00\x00\x00\x02", "modbus"),
]

HTTP_GET = b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nUser-Agent: t\r\n\r\n"
# (case, transport, payload, expected signature name or None)
CASES: list[tuple[str, int, bytes, str | None]] = [
    # TLS
    ("tls-client-hello", PROTO_TCP, MC.tls_client_hello("example.org"), "tls-client-hello"),
    ("tls-server-hello", PROTO_TCP, MC.tls_server_hello(), "tls-server-hello"),
    ("sslv2-hello", PROTO_TCP, b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(37), "sslv2-client-hello"),
    ("tls-finished-like", PROTO_TCP, b"\x16\x03\x03\x00\x28" + bytes(40), "tls-handshake"),
    ("tls-appdata", PROTO_TCP, b"\x17\x03\x03\x00\x20" + bytes(32), "tls-record"),
    ("tls-bad-version", PROTO_TCP, b"\x16\x03\x07\x00\x28\x01" + bytes(40), None),
    ("tls-on-udp", PROTO_UDP, b"\x17\x03\x03\x00\x20" + bytes(32), None),
    # HTTP
    ("http-get", PROTO_TCP, HTTP_GET, "http-request"),
    ("http-post-abs", PROTO_TCP, b"POST http://example.org/x HTTP/1.1\r\nHost: example.org\r\n\r\n", "http-request"),
    ("http-connect", PROTO_TCP, b"CONNECT example.org:443 HTTP/1.1\r\n\r\n", "http-request"),
    ("http-response", PROTO_TCP, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "http-response"),
    (
        "http2-preface",
        PROTO_TCP,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
        "http2-preface",
    ),
    ("rtsp-not-http", PROTO_TCP, b"OPTIONS rtsp://cam.example/ RTSP/1.0\r\nCSeq: 1\r\n\r\n", "rtsp-request"),
    ("http-lowercase", PROTO_TCP, b"get /index.html HTTP/1.1\r\nHost: x\r\n\r\n", None),
    ("http-bad-status", PROTO_TCP, b"HTTP/1.1 999 Odd\r\n\r\n", None),
    ("http2-near", PROTO_TCP, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", None),
    # SSDP
    ("ssdp-search", PROTO_UDP, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\n\r\n", "ssdp"),
    ("ssdp-over-tcp", PROTO_TCP, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n", None),
    # SSH
    ("ssh", PROTO_TCP, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "ssh-banner"),
    ("ssh-1.99", PROTO_TCP, b"SSH-1.99-Cisco-1.25\r\n", "ssh-banner"),
    ("ssh-near", PROTO_TCP, b"SSH-3.0-future\r\n", None),
    # NetBIOS
    ("nbns", PROTO_UDP, nbns_query(), "netbios-ns"),
    ("nbdgm", PROTO_UDP, nb_datagram(), "netbios-datagram"),
    (
        "nbss-request",
        PROTO_TCP,
        b"\x81\x00\x00\x44" + b"\x20CKFDENECFDEFFCFGEFFCCACACACACACA\x00" * 2,
        "netbios-session-request",
    ),
    # DNS
    ("dns-query", PROTO_UDP, dns_query(), "dns"),
    ("dns-long-name", PROTO_UDP, dns_query(".".join(["a" * 63] * 3) + ".example"), "dns"),
    ("dns-root", PROTO_UDP, dns_query(".", "NS"), "dns"),
    ("mdns-announcement", PROTO_UDP, mdns_announcement(), "dns-answer"),
    ("dns-tcp", PROTO_TCP, struct.pack("!H", len(dns_query())) + dns_query(), "dns-tcp"),
    ("dns-cut-name", PROTO_UDP, dns_query()[:20], None),
    ("dns-label-64", PROTO_UDP, dns_query()[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", None),
    ("dns-bad-class", PROTO_UDP, dns_query()[:-2] + b"\x00\x09", None),
    ("dns-opcode-3", PROTO_UDP, dns_query()[:2] + b"\x18\x00" + dns_query()[4:], None),
    ("dns-pointer-first", PROTO_UDP, dns_query()[:12] + b"\xc0\x0c\x00\x01\x00\x01", None),
    # mail and file transfer
    ("smtp-greeting", PROTO_TCP, b"220 mx.example.org ESMTP Postfix (Debian)\r\n", "smtp-greeting"),
    ("ftp-greeting", PROTO_TCP, b"220 (vsFTPd 3.0.3)\r\n", "ftp-greeting"),
    ("ftp-multiline", PROTO_TCP, b"220-FileZilla Server 1.7\r\n220 Please visit\r\n", "ftp-greeting"),
    ("greeting-unknown", PROTO_TCP, b"220 welcome\r\n", None),
    ("smtp-ehlo", PROTO_TCP, b"ehlo client.example.org\r\n", "smtp-hello"),
    ("ftp-auth-tls", PROTO_TCP, b"AUTH TLS\r\n", "ftp-command"),
    ("ftp-user", PROTO_TCP, b"USER anonymous\r\n", "ftp-user"),
    ("pop3-greeting", PROTO_TCP, b"+OK Dovecot ready.\r\n", "pop3-greeting"),
    ("redis-ok", PROTO_TCP, b"+OK\r\n", None),
    ("pop3-capa", PROTO_TCP, b"CAPA\r\n", "pop3-command"),
    ("imap-greeting", PROTO_TCP, b"* OK [CAPABILITY IMAP4rev1] ready\r\n", "imap-greeting"),
    ("imap-near", PROTO_TCP, b"* NO go away\r\n", None),
    # QUIC
    ("quic-v1", PROTO_UDP, quic_initial(), "quic-long-header"),
    ("quic-draft-29", PROTO_UDP, quic_initial(b"\xff\x00\x00\x1d"), "quic-long-header"),
    ("quic-v2", PROTO_UDP, quic_initial(b"\x6b\x33\x43\xcf"), "quic-long-header"),
    ("quic-grease", PROTO_UDP, quic_initial(b"\x1a\x2a\x3a\x4a"), "quic-long-header"),
    ("gquic-q050", PROTO_UDP, b"\xc3Q050\x50" + bytes(40), "gquic-long-header"),
    ("gquic-q043", PROTO_UDP, b"\x0d" + bytes(8) + b"Q043" + b"\x01" + bytes(40), "gquic"),
    ("quic-unknown-version", PROTO_UDP, quic_initial(b"\x12\x34\x56\x78"), None),
    ("quic-cid-too-long", PROTO_UDP, quic_initial(dcid_len=21), None),
    # SMB
    ("smb2", PROTO_TCP, smb2_negotiate(), "smb"),
    ("smb1", PROTO_TCP, smb1_negotiate(), "smb"),
    ("smb-near", PROTO_TCP, b"\x00\x00\x00\x40\xfeSMX" + bytes(60), None),
    # RDP
    ("rdp-cr", PROTO_TCP, rdp_request(), "rdp-connection-request"),
    ("rdp-cr-neg-only", PROTO_TCP, rdp_request(cookie=False), "rdp-connection-request"),
    ("rdp-cc", PROTO_TCP, rdp_confirm(), "rdp-connection-confirm"),
    ("s7-cotp-cr", PROTO_TCP, s7_request(), "cotp-tsap-request"),
    ("rdp-bad-length", PROTO_TCP, rdp_request()[:-1] + b"\x00\x00", None),
    # MQTT
    ("mqtt-connect", PROTO_TCP, mqtt_connect(), "mqtt-connect"),
    ("mqtt-3.1", PROTO_TCP, mqtt_connect(b"MQIsdp", 3), "mqtt-connect"),
    ("mqtt-long", PROTO_TCP, mqtt_connect(client=b"c" * 200), "mqtt-connect"),
    ("mqtt-publish", PROTO_TCP, mqtt_publish(), None),
    ("mqtt-bad-level", PROTO_TCP, mqtt_connect(level=9), None),
    # Modbus/TCP
    ("modbus", PROTO_TCP, modbus_read(), "modbus"),
    ("modbus-bad-length", PROTO_TCP, modbus_read()[:5] + b"\x07" + modbus_read()[6:], None),
    ("modbus-bad-function", PROTO_TCP, modbus_read()[:7] + b"\x63" + modbus_read()[8:], None),
    # NTP
    ("ntp-client", PROTO_UDP, ntp(3), "ntp"),
    ("ntp-server-v3", PROTO_UDP, ntp(4, 3), "ntp"),
    ("ntp-mode-7", PROTO_UDP, ntp(7), None),
    ("ntp-short", PROTO_UDP, ntp(3)[:47], None),
    # SNMP
    ("snmp-v2c", PROTO_UDP, snmp_get(), "snmp"),
    ("snmp-long", PROTO_UDP, snmp_long(), "snmp"),
    ("snmp-bad-length", PROTO_UDP, snmp_get() + b"\x00", None),
    # SIP
    ("sip-invite", PROTO_UDP, b"INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n", "sip-request"),
    ("sip-register-tcp", PROTO_TCP, b"REGISTER sips:example.org SIP/2.0\r\n\r\n", "sip-request"),
    ("sip-response", PROTO_UDP, b"SIP/2.0 180 Ringing\r\n\r\n", "sip-response"),
    ("sip-near", PROTO_UDP, b"INVITE http://example.org SIP/2.0\r\n\r\n", None),
    # BitTorrent
    ("bt-handshake", PROTO_TCP, b"\x13BitTorrent protocol" + bytes(8) + bytes(40), "bittorrent-handshake"),
    ("bt-near", PROTO_TCP, b"\x13BitTorrent protocoX" + bytes(48), None),
    ("bt-dht-ping", PROTO_UDP, b"d1:ad2:id20:" + bytes(20) + b"e1:q4:ping1:t2:aa1:y1:qe", "bittorrent-dht"),
    ("bt-dht-near", PROTO_UDP, b"d1:xd2:id20:" + bytes(20) + b"e", None),
    *MORE_CASES,
    # nothing
    ("random", PROTO_TCP, bytes(range(7, 250, 3)), None),
    ("zeros-udp", PROTO_UDP, bytes(100), None),
]


def write_cases(path: Path, cases=CASES) -> dict[int, str]:
    """One packet per case, each its own flow; returns packet number -> case name."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    pkts, names = [], {}
    for i, (name, proto, payload, _) in enumerate(cases):
        l4 = TCP(sport=40000 + i, dport=9, flags="PA") if proto == PROTO_TCP else UDP(sport=40000 + i, dport=9)
        p = Ether() / IP(src="192.0.2.1", dst="198.51.100.1") / l4 / Raw(payload)
        p.time = 1_700_000_000 + i
        pkts.append(p)
        names[i + 1] = name
    wrpcap(str(path), pkts)
    return names


@pytest.fixture(scope="module")
def recognised(tmp_path_factory) -> dict[str, str | None]:
    """Case name -> signature name the reader + scan give its packet."""
    path = tmp_path_factory.mktemp("sigs") / "cases.pcap"
    names = write_cases(path)
    out: dict[str, str | None] = {}
    for batch in read_batches([path]):
        tags = scan(batch)
        for row in range(len(batch)):
            code = int(tags.sig[row])
            out[names[int(batch.pkt_index[row])]] = SIG_NAMES[code] if code else None
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_signature_recognises_its_case(recognised, case) -> None:
    name, _, _, want = case
    assert recognised[name] == want


UNTESTED = {
    "bacnet", "bacnet-bvlc", "bfd", "cql", "dcerpc", "dlms-wrapper", "dnp3", "dns-tcp", "ftp-command",
    "ftp-greeting", "gre-in-udp", "hart-ip-request", "hart-ip-response", "iec104-u", "ike-natt", "imap-greeting",
    "kafka-request", "kafka-response", "memcached-binary", "memcached-text", "memcached-udp", "mongodb-reply",
    "mongodb-request", "mqtt-connect", "netbios-session-request", "nfs-call-tcp", "nntp-command", "ptp",
    "raknet-ping", "raknet-pong", "s7comm", "sunrpc-call-tcp", "tds-login7", "tds-prelogin", "utp-state", "utp-syn",
}  # fmt: skip
"""Signatures with neither a case here nor a packet in the shared corpus (test_evidence_corpus.py)."""


def test_every_signature_has_a_positive_case() -> None:
    """A signature is tested by a case here or by real packets of the shared corpus; the rest are listed."""
    from tests.test_evidence_corpus import corpus_signatures

    positives = {c[3] for c in CASES if c[3]} | corpus_signatures()
    assert {s.name for s in SIGNATURES} - positives == UNTESTED - positives


def test_every_protocol_has_a_signature_and_codes_fit() -> None:
    assert {s.protocol for s in SIGNATURES} == {p.name for p in PROTOCOLS}
    assert len(SIGNATURES) < 256 and SIG_NAMES[0] == ""
    for c in COMPILED:  # every byte test lies in the prefix matrix
        assert all(w < PREFIX_BYTES // 8 for w, _, _ in c.words)


def test_same_codes_whatever_the_batch_layout() -> None:
    """Payloads packed in one synthetic buffer (no headers between them) give the same codes."""
    tcp = [c for c in CASES if c[1] == PROTO_TCP]
    codes = scan_bytes([c[2] for c in tcp], PROTO_TCP)
    assert [SIG_NAMES[x] or None for x in codes] == [c[3] for c in tcp]
    mixed, _ = scan_payloads([c[2] for c in CASES], [c[1] for c in CASES])
    assert [SIG_NAMES[x] or None for x in mixed] == [c[3] for c in CASES]


def test_payload_cut_by_snaplen_is_not_recognised_past_it() -> None:
    """Bytes past payload_len (the next packet's) never complete a signature."""
    b_codes, tags = scan_payloads([b"SSH-2.", b"0-OpenSSH\r\n", b"\x13BitTorrent", b" protocol" + bytes(40)])
    assert b_codes.tolist() == [0, 0, 0, 0]


def test_later_fragments_and_empty_payloads_are_skipped() -> None:
    from classifier.capture.columns import FRAG_LATER

    codes, _ = scan_payloads([b"SSH-2.0-x\r\n", b"", b"SSH-2.0-y\r\n"])
    assert [SIG_NAMES[c] for c in codes] == ["ssh-banner", "", "ssh-banner"]
    from classifier.flows import make_batch

    b = make_batch(ts_ns=[0], src=["192.0.2.1"], dst=["192.0.2.2"], sport=1, dport=2, payload_len=11, frag=FRAG_LATER)
    b.data = np.frombuffer(b"SSH-2.0-x\r\n", np.uint8).copy()
    b.payload_off = np.zeros(1, np.int64)
    assert scan(b).sig.tolist() == [0]


def test_first_matching_row_wins() -> None:
    """A ClientHello also fits the generic handshake row; the table order names it ClientHello."""
    codes = scan_bytes([MC.tls_client_hello("a.example")])
    assert SIG_NAMES[codes[0]] == "tls-client-hello"


# ----------------------------------------------------------------------------- walks


def test_server_name_from_client_hello() -> None:
    _, tags = scan_payloads([HTTP_GET, MC.tls_client_hello("example.org"), MC.tls_client_hello("x.example")])
    assert tags.name_rows.tolist() == [1, 2]
    assert tags.names.tolist() == [b"example.org", b"x.example"]


def test_long_server_name_is_cut_to_the_column_width() -> None:
    name = "a" * 60 + ".example.org"
    _, tags = scan_payloads([MC.tls_client_hello(name)])
    assert tags.names.tolist() == [name.encode()[:64]]


def test_client_hello_without_sni_or_cut_short() -> None:
    hello = MC.tls_client_hello("example.org")
    buf = np.frombuffer(hello + hello[:60], np.uint8)
    found, names = tls_server_name(buf, np.array([0, len(hello)]), np.array([len(hello), 60]), 64)
    assert found.tolist() == [True, False] and names[0] == b"example.org"
    no_sni = hello.replace(b"\x00\x00\x00\x10\x00\x0e\x00\x00\x0bexample.org", b"\xff\x01\x00\x10" + bytes(16))
    found, _ = tls_server_name(np.frombuffer(no_sni, np.uint8), np.array([0]), np.array([len(no_sni)]), 64)
    assert found.tolist() == [False]


def test_dns_walk_is_bounded_and_lockstep() -> None:
    q1, q2 = dns_query("a.b.c.d.e.f.example"), dns_query("example.com")
    loop = q1[:12] + b"\x01a" * 200 + b"\x00\x00\x01\x00\x01"  # more labels than MAX_LABELS
    buf = np.frombuffer(q1 + q2 + loop, np.uint8)
    starts = np.array([0, len(q1), len(q1) + len(q2)])
    lengths = np.array([len(q1), len(q2), len(loop)])
    assert dns_first_name(buf, starts, lengths).tolist() == [True, True, False]
    assert MAX_LABELS <= 128


def test_keyword_search_any_case_within_window() -> None:
    buf = np.frombuffer(b"220 host eSmTp ready\r\n" + b"220 " + b"x" * 200 + b"smtp", np.uint8)
    ok = contains_any(buf, np.array([0, 22]), np.array([22, 208]), (b"smtp",), 160)
    assert ok.tolist() == [True, False]


def test_prefix_matrix_pads_past_the_chunk() -> None:
    data = np.arange(30, dtype=np.uint8)
    m = prefix_matrix(data, np.array([0, 20, 29]), 16)
    assert m[0].tolist() == list(range(16))
    assert m[1].tolist() == list(range(20, 30)) + [0] * 6
    assert m[2].tolist() == [29] + [0] * 15


def test_table_rejects_tests_beyond_the_prefix() -> None:
    from classifier.evidence.match import _compile

    with pytest.raises(ValueError):
        _compile(1, Signature("x", "tcp", "any", (LenField(PREFIX_BYTES, 2),)))
    far = _compile(1, Signature("f", "tcp", "any", (Lit(PREFIX_BYTES, b"x"),)))  # past the prefix: a gather
    assert far.far and not far.words
    c = _compile(1, Signature("y", "tcp", "any", (OneOf(0, (b"ab", b"AB"), nocase=True),)))
    assert sorted(c.anchor.tolist()) == [ord("A"), ord("a")]


def test_docstring_examples() -> None:
    import doctest

    from classifier import evidence
    from classifier.evidence import extract, match, table, tshark, verdict, walk

    for mod in (evidence, match, table, walk, verdict, tshark, extract):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__
