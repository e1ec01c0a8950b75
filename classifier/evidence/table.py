"""The evidence stage's data: protocols, payload signatures, and the registry names that carry each protocol.

Everything here is plain data, read by ``classifier.evidence.match`` (signatures) and
``classifier.evidence.verdict`` (names).  A signature is a row of byte tests on the first
bytes of one packet's transport payload; its order in ``SIGNATURES`` is its priority (the
first row that matches a packet names it) and its 1-based position is the code the flow
stage carries (``FlowTable.evidence_sig_*``, 0: nothing recognised).  Append new rows at
the end so codes of existing rows stay put within a release.

Byte tests (offsets from the start of the payload; see the constructors below):

``Lit(off, b"...", nocase=False)``  literal bytes (``nocase``: ASCII letters either case);
``Bits(off, mask, value)``          ``payload[off:off+len] & mask == value`` (bytes);
``OneOf(off, (b"..", ..), masks)`` one of several literals (each optionally masked) at ``off``;
``ByteIn(off, values)``             ``payload[off]`` in a set of byte values;
``LenField(off, size, add, op, lo, hi, mask)``  the big-endian field at ``off`` (``& mask``),
                                    plus ``add``, compared (``op`` eq/ge/le/any) with the
                                    payload length, and bounded by ``lo <= field <= hi``.

A row also names its transport (tcp/udp/any), the side that sends such a payload (client,
server or any: shown with the evidence, and used to prefer role-consistent evidence), its
length bounds, its weight (how much it says: 3 decisive, 2 good, 1 weak) and an optional
structural ``check`` that walks the payload (``dns``, ``dns-answer``, ``tls-client-hello``,
``keyword``) on the rows the byte tests kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --------------------------------------------------------------------------- byte tests


@dataclass(frozen=True)
class Lit:
    """Literal bytes at ``off`` (``nocase``: ASCII letters match either case)."""

    off: int
    value: bytes
    nocase: bool = False


@dataclass(frozen=True)
class Bits:
    """``payload[off:off+len(value)] & mask == value``."""

    off: int
    mask: bytes
    value: bytes


@dataclass(frozen=True)
class OneOf:
    """One of several literals at ``off``; ``masks`` (one per value, or None) apply to each."""

    off: int
    values: tuple[bytes, ...]
    masks: tuple[bytes, ...] | None = None
    nocase: bool = False


@dataclass(frozen=True)
class ByteIn:
    """``payload[off]`` is one of ``values``."""

    off: int
    values: frozenset[int]


@dataclass(frozen=True)
class LenField:
    """A big-endian length field at ``off`` compared with the payload length.

    ``op``: ``eq`` field + add == payload length, ``ge`` field + add >= payload length (the
    message fills the segment or goes on past it), ``le`` field + add <= payload length,
    ``any`` no comparison; the field (after ``& mask``) must lie in ``[lo, hi]``.
    """

    off: int
    size: int
    add: int = 0
    op: str = "eq"
    lo: int = 0
    hi: int = 1 << 32
    mask: int = -1


Test = Lit | Bits | OneOf | ByteIn | LenField


@dataclass(frozen=True)
class Signature:
    """One row of the signature table (see the module docstring)."""

    name: str
    protocol: str
    transport: str  # tcp | udp | any
    role: str  # client | server | any
    tests: tuple[Test, ...]
    min_len: int = 0
    max_len: int = 0  # 0: no bound
    weight: int = 2
    check: str | None = None
    keywords: tuple[bytes, ...] = ()  # for check="keyword": one must occur (any case) ...
    window: int = 0  # ... within the first ``window`` payload bytes
    lengths: tuple[int, ...] = ()  # payload length must be one of these (empty: any)


@dataclass(frozen=True)
class Protocol:
    """A protocol the stage can recognise: ECS ``network.protocol`` name and display name."""

    name: str  # lower case, as ECS network.protocol
    display: str


def _r(lo: int, hi: int) -> frozenset[int]:
    return frozenset(range(lo, hi + 1))


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("tls", "TLS"),
    Protocol("http", "HTTP"),
    Protocol("ssh", "SSH"),
    Protocol("dns", "DNS"),
    Protocol("smtp", "SMTP"),
    Protocol("ftp", "FTP"),
    Protocol("pop3", "POP3"),
    Protocol("imap", "IMAP"),
    Protocol("quic", "QUIC"),
    Protocol("smb", "SMB"),
    Protocol("rdp", "RDP"),
    Protocol("mqtt", "MQTT"),
    Protocol("modbus", "Modbus/TCP"),
    Protocol("ntp", "NTP"),
    Protocol("snmp", "SNMP"),
    Protocol("sip", "SIP"),
    Protocol("bittorrent", "BitTorrent"),
    Protocol("ssdp", "SSDP"),
    Protocol("netbios", "NetBIOS"),
)
"""Recognisable protocols; code = 1-based position (0: none)."""

# --------------------------------------------------------------------------- signatures

_TLS_VER = _r(0, 4)  # SSL 3.0 .. TLS 1.3 minor version byte
_TLS_REC = LenField(3, 2, lo=1, hi=(1 << 14) + 2048, op="any")
_DNS_OPCODE = frozenset(v for v in range(256) if ((v >> 3) & 0xF) in (0, 1, 2, 4, 5))
_DNS_B3 = frozenset(v for v in range(256) if not v & 0x40)  # Z bit clear
_NTP_B0 = frozenset(li << 6 | vn << 3 | mode for li in range(4) for vn in range(1, 5) for mode in range(1, 6))
_MODBUS_FN = frozenset(
    f | e for f in (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43) for e in (0, 0x80)
)
_SNMP_VER = frozenset({0, 1, 3})
_HTTP_METHODS = tuple(
    m + b" "
    for m in (
        b"GET",
        b"POST",
        b"HEAD",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"CONNECT",
        b"PATCH",
        b"TRACE",
        b"PROPFIND",
        b"PROPPATCH",
        b"MKCOL",
        b"COPY",
        b"MOVE",
        b"LOCK",
        b"UNLOCK",
        b"REPORT",
        b"SEARCH",
    )
)
_HTTP_REQUESTS = (
    tuple(m + b"/" for m in _HTTP_METHODS)
    + tuple(m + b"http://" for m in _HTTP_METHODS)
    + (b"CONNECT ", b"OPTIONS * HTTP/1.")
)
"""A method and an origin-form or absolute http URI (RTSP and SIP use rtsp:/sip: URIs), or CONNECT."""
_SIP_METHODS = tuple(
    m + b" sip"
    for m in (
        b"INVITE",
        b"REGISTER",
        b"OPTIONS",
        b"ACK",
        b"BYE",
        b"CANCEL",
        b"SUBSCRIBE",
        b"NOTIFY",
        b"MESSAGE",
        b"INFO",
        b"PRACK",
        b"UPDATE",
        b"REFER",
        b"PUBLISH",
    )
)
_QUIC_VERSIONS = (  # (value, mask): v1, v2, IETF drafts ff0000xx, Facebook mvfst faceb00x, greased
    (b"\x00\x00\x00\x01", b"\xff\xff\xff\xff"),
    (b"\x6b\x33\x43\xcf", b"\xff\xff\xff\xff"),
    (b"\xff\x00\x00\x00", b"\xff\xff\xff\x00"),
    (b"\xfa\xce\xb0\x00", b"\xff\xff\xff\xf0"),
    (b"\x0a\x0a\x0a\x0a", b"\x0f\x0f\x0f\x0f"),  # reserved 0x?a?a?a?a: forces version negotiation
)
_GQUIC_VERSIONS = ((b"Q0", b"\xff\xff"), (b"T0", b"\xff\xff"))  # Google QUIC Q046+/T05x in long headers
_NB_NAME = _r(ord("A"), ord("P"))  # first-level encoded NetBIOS name characters


def _dns(prefix: int, transport: str, name: str, answer_only: bool = False) -> Signature:
    """A DNS message at ``prefix`` (2 on TCP: the length field): header sanity, then a name walk."""
    p = prefix
    counts: tuple[Test, ...] = (
        ByteIn(p + 2, _DNS_OPCODE),
        ByteIn(p + 3, _DNS_B3),
        Lit(p + 6, b"\x00"),  # an/ns/ar counts below 256
        Lit(p + 8, b"\x00"),
        Lit(p + 10, b"\x00"),
    )
    if answer_only:  # no question, at least one answer (mDNS announcements)
        qd: tuple[Test, ...] = (Lit(p + 4, b"\x00\x00"), ByteIn(p + 7, _r(1, 255)))
    else:
        qd = (Lit(p + 4, b"\x00"), ByteIn(p + 5, _r(1, 255)))
    tests = qd + counts
    if prefix:
        tests = (LenField(0, 2, add=2, op="ge", lo=17),) + tests
    return Signature(
        name,
        "dns",
        transport,
        "any",
        tests,
        min_len=p + 17,
        weight=3,
        check="dns-answer" if answer_only else "dns",
    )


def _mqtt(name: bytes, varint: int) -> Signature:
    """MQTT CONNECT with a ``varint``-byte remaining length and protocol name ``name``."""
    tests: list[Test] = [Lit(0, b"\x10")]
    for i in range(1, varint):
        tests.append(ByteIn(i, _r(0x80, 0xFF)))
    tests.append(ByteIn(varint, _r(0, 0x7F)))
    tests.append(Lit(varint + 1, len(name).to_bytes(2, "big") + name))
    tests.append(ByteIn(varint + 3 + len(name), frozenset({3, 4, 5})))  # protocol level
    return Signature("mqtt-connect", "mqtt", "tcp", "client", tuple(tests), weight=3)


def _snmp(form: int) -> Signature:
    """SNMP message (BER SEQUENCE, version INTEGER 0/1/3) with a 1/2/3-byte BER length (``form``)."""
    if form == 1:
        ln: tuple[Test, ...] = (LenField(1, 1, add=2, op="eq", hi=0x7F),)
    else:
        ln = (Lit(1, bytes([0x80 | (form - 1)])), LenField(2, form - 1, add=1 + form, op="eq"))
    v = 1 + form
    return Signature(
        "snmp",
        "snmp",
        "udp",
        "any",
        (Lit(0, b"\x30"),)
        + ln
        + (Lit(v, b"\x02\x01"), ByteIn(v + 2, _SNMP_VER), ByteIn(v + 3, frozenset({0x04, 0x30}))),
        weight=3,
    )


SIGNATURES: tuple[Signature, ...] = (
    # ---- TLS (TCP): handshake records first; a bare record header is weak evidence
    Signature(
        "tls-client-hello",
        "tls",
        "tcp",
        "client",
        (Lit(0, b"\x16\x03"), ByteIn(2, _TLS_VER), _TLS_REC, Lit(5, b"\x01"), Lit(9, b"\x03"), ByteIn(10, _TLS_VER)),
        weight=3,
        check="tls-client-hello",
    ),
    Signature(
        "tls-server-hello",
        "tls",
        "tcp",
        "server",
        (Lit(0, b"\x16\x03"), ByteIn(2, _TLS_VER), _TLS_REC, Lit(5, b"\x02"), Lit(9, b"\x03"), ByteIn(10, _TLS_VER)),
        weight=3,
    ),
    Signature(
        "sslv2-client-hello",
        "tls",
        "tcp",
        "client",
        (
            Bits(0, b"\x80", b"\x80"),
            Lit(2, b"\x01"),
            OneOf(3, (b"\x00\x02", b"\x03\x00", b"\x03\x01", b"\x03\x02", b"\x03\x03")),
        ),
        min_len=11,
        weight=2,
    ),
    Signature("tls-handshake", "tls", "tcp", "any", (Lit(0, b"\x16\x03"), ByteIn(2, _TLS_VER), _TLS_REC), weight=1),
    Signature(
        "tls-record",
        "tls",
        "tcp",
        "any",
        (ByteIn(0, frozenset({0x14, 0x15, 0x17})), Lit(1, b"\x03"), ByteIn(2, _r(1, 4)), _TLS_REC),
        weight=1,
    ),
    # ---- HTTP/1.x and the HTTP/2 connection preface (TCP)
    Signature(
        "http-request",
        "http",
        "tcp",
        "client",
        (OneOf(0, _HTTP_REQUESTS),),
        min_len=16,
        weight=3,
    ),
    Signature(
        "http-response",
        "http",
        "tcp",
        "server",
        (OneOf(0, (b"HTTP/1.0 ", b"HTTP/1.1 ")), ByteIn(9, _r(ord("1"), ord("5")))),
        min_len=12,
        weight=3,
    ),
    Signature("http2-preface", "http", "tcp", "client", (Lit(0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),), weight=3),
    # ---- SSDP: HTTP over UDP (multicast search and announcements)
    Signature(
        "ssdp",
        "ssdp",
        "udp",
        "any",
        (OneOf(0, (b"M-SEARCH * HTTP/1.", b"NOTIFY * HTTP/1.", b"HTTP/1.1 200")),),
        weight=3,
    ),
    # ---- SSH identification string
    Signature("ssh-banner", "ssh", "tcp", "any", (OneOf(0, (b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-")),), weight=3),
    # ---- NetBIOS name service (a DNS-shaped message with an encoded 32-byte name): before DNS
    Signature(
        "netbios-ns",
        "netbios",
        "udp",
        "any",
        (
            Lit(4, b"\x00"),
            ByteIn(5, _r(0, 1)),
            Lit(12, b"\x20"),
            ByteIn(13, _NB_NAME),
            ByteIn(14, _NB_NAME),
            ByteIn(15, _NB_NAME),
        ),
        min_len=50,
        weight=3,
    ),
    Signature(
        "netbios-datagram",
        "netbios",
        "udp",
        "any",
        (ByteIn(0, _r(0x10, 0x12)), Lit(14, b"\x20"), ByteIn(15, _NB_NAME), ByteIn(16, _NB_NAME)),
        min_len=82,
        weight=3,
    ),
    # ---- DNS: header sanity and a walk of the first name (question, or answer when qdcount is 0)
    _dns(0, "udp", "dns"),
    _dns(0, "udp", "dns-answer", answer_only=True),
    _dns(2, "tcp", "dns-tcp"),
    # ---- mail and file transfer greetings and commands
    Signature(
        "smtp-greeting",
        "smtp",
        "tcp",
        "server",
        (Lit(0, b"220"), OneOf(3, (b" ", b"-"))),
        min_len=6,
        weight=2,
        check="keyword",
        keywords=(b"smtp",),
        window=160,
    ),
    Signature(
        "ftp-greeting",
        "ftp",
        "tcp",
        "server",
        (Lit(0, b"220"), OneOf(3, (b" ", b"-"))),
        min_len=6,
        weight=2,
        check="keyword",
        keywords=(b"ftp", b"filezilla"),
        window=160,
    ),
    Signature("smtp-hello", "smtp", "tcp", "client", (OneOf(0, (b"EHLO ", b"HELO "), nocase=True),), weight=2),
    Signature(
        "ftp-command",
        "ftp",
        "tcp",
        "client",
        (OneOf(0, (b"AUTH TLS", b"AUTH SSL", b"FEAT\r\n", b"SYST\r\n", b"OPTS UTF8"), nocase=True),),
        weight=2,
    ),
    Signature("ftp-user", "ftp", "tcp", "client", (Lit(0, b"USER ", nocase=True),), weight=1),
    Signature(
        "pop3-greeting", "pop3", "tcp", "server", (Lit(0, b"+OK "),), min_len=6, weight=2
    ),  # not Redis' "+OK\r\n"
    Signature(
        "pop3-command",
        "pop3",
        "tcp",
        "client",
        (OneOf(0, (b"CAPA\r\n", b"STLS\r\n", b"APOP "), nocase=True),),
        weight=2,
    ),
    Signature("imap-greeting", "imap", "tcp", "server", (OneOf(0, (b"* OK", b"* PREAUTH")),), min_len=6, weight=2),
    # ---- QUIC long header (IETF versions, drafts, mvfst, Google) and gQUIC's public header
    Signature(
        "quic-long-header",
        "quic",
        "udp",
        "any",
        (
            Bits(0, b"\xc0", b"\xc0"),
            OneOf(1, tuple(v for v, _ in _QUIC_VERSIONS), tuple(m for _, m in _QUIC_VERSIONS)),
            ByteIn(5, _r(0, 20)),
        ),
        min_len=20,
        weight=3,
    ),
    Signature(
        "gquic-long-header",
        "quic",
        "udp",
        "any",
        (
            Bits(0, b"\xc0", b"\xc0"),
            OneOf(1, tuple(v for v, _ in _GQUIC_VERSIONS), tuple(m for _, m in _GQUIC_VERSIONS)),
            ByteIn(3, _r(ord("0"), ord("9"))),
            ByteIn(4, _r(ord("0"), ord("9"))),
        ),
        min_len=20,
        weight=3,
    ),
    Signature(
        "gquic",
        "quic",
        "udp",
        "client",
        (ByteIn(0, frozenset({0x09, 0x0D, 0x19, 0x1D})), Lit(9, b"Q0"), ByteIn(11, _r(ord("0"), ord("9")))),
        min_len=20,
        weight=3,
    ),
    # ---- SMB over NetBIOS session service / direct TCP
    Signature(
        "smb",
        "smb",
        "tcp",
        "any",
        (Lit(0, b"\x00"), ByteIn(1, _r(0, 1)), OneOf(4, (b"\xffSMB", b"\xfeSMB", b"\xfdSMB"))),
        weight=3,
    ),
    Signature(
        "netbios-session-request",
        "netbios",
        "tcp",
        "client",
        (Lit(0, b"\x81\x00"), LenField(2, 2, add=4, op="eq"), Lit(4, b"\x20"), ByteIn(5, _NB_NAME)),
        weight=3,
    ),
    # ---- RDP: TPKT + X.224 connection request / confirm (cookie or RDP negotiation after it)
    Signature(
        "rdp-connection-request",
        "rdp",
        "tcp",
        "client",
        (
            Lit(0, b"\x03\x00"),
            LenField(2, 2, op="eq"),
            LenField(4, 1, add=5, op="eq"),
            Lit(5, b"\xe0\x00\x00"),
            ByteIn(11, frozenset({ord("C"), 0x01})),
        ),
        weight=3,
    ),
    Signature(
        "rdp-connection-confirm",
        "rdp",
        "tcp",
        "server",
        (
            Lit(0, b"\x03\x00"),
            LenField(2, 2, op="eq"),
            LenField(4, 1, add=5, op="eq"),
            Lit(5, b"\xd0\x00\x00"),
            ByteIn(11, frozenset({0x02, 0x03})),
        ),
        weight=3,
    ),
    # ---- MQTT CONNECT (3.1 "MQIsdp", 3.1.1/5 "MQTT"), 1-3 byte remaining length
    _mqtt(b"MQTT", 1),
    _mqtt(b"MQTT", 2),
    _mqtt(b"MQTT", 3),
    _mqtt(b"MQIsdp", 1),
    _mqtt(b"MQIsdp", 2),
    # ---- Modbus/TCP: MBAP header (protocol 0, length = rest of the ADU) and a function code
    Signature(
        "modbus",
        "modbus",
        "tcp",
        "any",
        (Lit(2, b"\x00\x00"), LenField(4, 2, add=6, op="eq", lo=2, hi=254), ByteIn(7, _MODBUS_FN)),
        min_len=8,
        weight=2,
    ),
    # ---- NTP: 48-byte header (+ MAC), version 1-4, mode 1-5, stratum <= 16, short root delay/dispersion
    Signature(
        "ntp",
        "ntp",
        "udp",
        "any",
        (ByteIn(0, _NTP_B0), ByteIn(1, _r(0, 16)), Lit(4, b"\x00"), Lit(8, b"\x00")),
        lengths=(48, 52, 60, 68, 72),
        weight=2,
    ),
    # ---- SNMP v1/v2c/v3
    _snmp(1),
    _snmp(2),
    _snmp(3),
    # ---- SIP requests and responses (UDP or TCP)
    Signature("sip-request", "sip", "any", "client", (OneOf(0, _SIP_METHODS),), weight=3),
    Signature(
        "sip-response", "sip", "any", "server", (Lit(0, b"SIP/2.0 "), ByteIn(8, _r(ord("1"), ord("6")))), weight=3
    ),
    # ---- BitTorrent peer handshake and DHT (bencoded KRPC)
    Signature("bittorrent-handshake", "bittorrent", "tcp", "any", (Lit(0, b"\x13BitTorrent protocol"),), weight=3),
    Signature(
        "bittorrent-dht",
        "bittorrent",
        "udp",
        "any",
        (OneOf(0, (b"d1:ad2:id20:", b"d1:rd2:id20:", b"d2:ip6:", b"d1:eli")),),
        weight=2,
    ),
)
"""The signature table, in priority order; code = 1-based position."""

# --------------------------------------------------------------------------- registry names


@dataclass(frozen=True)
class Carriers:
    """Registry service names that carry a protocol.

    ``names`` are matched exactly; ``name_re``/``desc_re`` (case-insensitive regular
    expressions over the record's name and description) catch the long tail, except
    where ``exclude_re`` matches the name.  ``after_plaintext`` are services that switch
    to the protocol after a plaintext start (STARTTLS): evidence found on a later payload
    packet of the flow is consistent there too.
    """

    names: tuple[str, ...] = ()
    name_re: str | None = None
    desc_re: str | None = None
    exclude_re: str | None = None
    after_plaintext: tuple[str, ...] = field(default=())


CARRIERS: dict[str, Carriers] = {
    "tls": Carriers(
        names=(
            "https",
            "imaps",
            "pop3s",
            "ftps",
            "ftps-data",
            "ldaps",
            "domain-s",
            "submissions",
            "nntps",
            "telnets",
            "ircs-u",
            "sips",
            "secure-mqtt",
            "ipps",
            "pcsync-https",
            "radsec",
            "xmpp-client",  # XEP-0368 direct TLS is common on the client port too
        ),
        name_re=r"https|ssl|tls",
        desc_re=r"\b(TLS|SSL|HTTPS)\b",
        exclude_re=r"dtls",
        after_plaintext=(
            "smtp",
            "submission",
            "imap",
            "pop3",
            "ftp",
            "ldap",
            "nntp",
            "xmpp-client",
            "xmpp-server",
            "postgresql",
            "mysql",
            "ms-sql-s",
            "irc",
            "sieve",
            "ms-wbt-server",
            "http",
            "http-alt",
            "socks",  # a proxy: anything after its handshake
        ),
    ),
    "http": Carriers(
        names=(
            "http",
            "www",
            "www-http",
            "http-alt",
            "http-mgmt",
            "gss-http",
            "http-rpc-epmap",
            "multiling-http",
            "webpush",
            "www-dev",
            "ipp",
            "xmpp-bosh",
        ),
        name_re=r"http(?!s)",
        desc_re=r"\bHTTP\b(?!S)|\bREST\b|\bSOAP\b",
        exclude_re=r"https|ssl|tls",
        after_plaintext=("socks",),
    ),
    "ssh": Carriers(
        names=(
            "ssh",
            "netconf-ssh",
            "sdo-ssh",
            "netconf-ch-ssh",
            "snmpssh",
            "snmpssh-trap",
            "tl1-ssh",
            "ssh-mgmt",
        ),
        desc_re=r"\bSSH\b",
    ),
    "dns": Carriers(names=("domain", "mdns", "llmnr", "menandmice-dns", "dns2go")),
    "smtp": Carriers(names=("smtp", "submission", "rsmtp")),
    "ftp": Carriers(names=("ftp",)),
    "pop3": Carriers(names=("pop3",)),
    "imap": Carriers(names=("imap",)),
    "quic": Carriers(names=("https", "domain-s"), desc_re=r"\bQUIC\b"),
    "smb": Carriers(names=("microsoft-ds", "netbios-ssn", "cifs", "smbdirect")),
    "rdp": Carriers(names=("ms-wbt-server", "vmrdp")),
    "mqtt": Carriers(names=("mqtt",)),
    "modbus": Carriers(names=("mbap",)),
    "ntp": Carriers(names=("ntp",)),
    "snmp": Carriers(name_re=r"snmp", exclude_re=r"ssh|tls"),
    "sip": Carriers(names=("sip",)),
    "bittorrent": Carriers(),  # no registered port
    "ssdp": Carriers(names=("ssdp",)),
    "netbios": Carriers(names=("netbios-ns", "netbios-dgm", "netbios-ssn")),
}
"""Protocol name -> the registry names that carry it (checked against the 2026 registry XML)."""
