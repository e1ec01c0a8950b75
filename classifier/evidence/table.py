# ruff: noqa: E501  (a data table: one protocol's tests read best on one line)
"""The evidence stage's data: one record per protocol, declared as data (in the spirit of dpkt's tables).

A ``Protocol`` says what portclass knows about one protocol: its byte signatures (per
direction: the side that sends such a payload), the registry service names that carry it
(``Carriers``), its names in Zeek (conn.log ``service``), Wireshark/tshark (the Protocol
column, normalised) and nDPI, the protocol it rides in (``over``: Elasticsearch over HTTP,
DNSCrypt's certificate query over DNS; the flow keeps both), what is extracted from it, and
how it is recognised.  ``PROTOCOLS`` is the table; ``SIGNATURES``, ``CARRIERS`` and the name
maps of the report and tshark layers are derived from it, so adding a protocol touches this
table and its tests only.  ``NOT_RECOGNISED`` lists protocols left out on purpose, and why.

A signature is a row of byte tests on the first bytes of one packet's transport payload.
Rows are evaluated in ``priority`` order (then table order; the first row that matches a
packet names it); a row's 1-based position in ``SIGNATURES`` is the code the flow stage
carries within one run (``FlowTable.evidence_sig_*``, 0: nothing recognised).

Byte tests (offsets from the start of the payload; any offset, those within the first
``match.PREFIX_BYTES`` are word tests, the others gathers):

``Lit(off, b"...", nocase=False)``  literal bytes (``nocase``: ASCII letters either case);
``Bits(off, mask, value)``          ``payload[off:off+len] & mask == value`` (bytes);
``OneOf(off, (b"..", ..), masks)`` one of several literals (each optionally masked) at ``off``;
``ByteIn(off, values)``             ``payload[off]`` in a set of byte values;
``Tail(back, b"...")``              the payload's last ``back`` bytes start with these;
``LenField(off, size, add, op, lo, hi, mask, little, scale)``  the field at ``off`` (``& mask``),
                                    times ``scale`` plus ``add``, compared (``op`` eq/ge/le/any)
                                    with the payload length, and bounded by ``lo <= field <= hi``;
``Echo(off, size, request, req_off)`` small state: a packet that signature ``request`` named
                                    came the other way on the same addresses and ports (same
                                    batch), with these ``size`` bytes at ``req_off`` (a reply
                                    echoing its request's id).

A row also names its transport (tcp/udp/any), the sending side (client, server or any: shown
with the evidence, and used to prefer role-consistent evidence), length bounds, its weight
(how much it says: 3 decisive, 2 good, 1 weak), ``confirm_only`` (weak evidence that may
confirm a registry name but never contradicts one) and an optional structural ``check`` that
walks the payload (``dns``, ``dns-answer``, ``tls-client-hello``, ``keyword`` (any case),
``keyword-exact``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
class Tail:
    """The payload's last ``back`` bytes begin with ``value`` (``Tail(1, b"\\x03")``: last byte 3)."""

    back: int
    value: bytes


@dataclass(frozen=True)
class LenField:
    """A length field at ``off`` compared with the payload length.

    ``op``: ``eq`` field * scale + add == payload length, ``ge`` ... >= payload length (the
    message fills the segment or goes on past it), ``le`` ... <= payload length, ``any`` no
    comparison; the field (after ``& mask``) must lie in ``[lo, hi]``.
    """

    off: int
    size: int
    add: int = 0
    op: str = "eq"
    lo: int = 0
    hi: int = 1 << 32
    mask: int = -1
    little: bool = False
    scale: int = 1


@dataclass(frozen=True)
class Echo:
    """This packet's ``size`` bytes at ``off`` equal those at ``req_off`` of a ``request`` packet sent the other way."""

    off: int
    size: int
    request: str
    req_off: int


Test = Lit | Bits | OneOf | ByteIn | Tail | LenField | Echo


@dataclass(frozen=True)
class Signature:
    """One row of the signature table (see the module docstring)."""

    name: str
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
    priority: int = 50  # lower runs first
    confirm_only: bool = False
    alt: str | None = None  # the same bytes may be this protocol too: named where the port carries it, ours not
    protocol: str = ""  # filled from the record


def sig(name: str, transport: str, role: str, *tests: Test, **kw: object) -> Signature:
    """A signature row (keywords as ``Signature``'s)."""
    return Signature(name, transport, role, tuple(tests), **kw)  # type: ignore[arg-type]


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


@dataclass(frozen=True)
class Protocol:
    """Everything portclass knows about one protocol (see the module docstring)."""

    name: str  # lower case, as ECS network.protocol
    display: str
    signatures: tuple[Signature, ...] = ()
    carriers: Carriers = Carriers()
    zeek: str | None = None  # conn.log service (Zeek's analyzer name); None: Zeek has none, portclass's name
    wireshark: tuple[str, ...] = ()  # tshark Protocol column names, normalised (``tshark.normalise``)
    ndpi: tuple[str, ...] = ()  # nDPI protocol names
    over: str | None = None  # the protocol this one rides in (the flow reports both)
    how: str = ""  # how it is recognised (README)
    extracts: str = ""  # what is taken from it (README)


def _r(lo: int, hi: int) -> frozenset[int]:
    return frozenset(range(lo, hi + 1))


_DIGITS = _r(0x30, 0x39)
_PRINT = _r(0x21, 0x7E)

# --------------------------------------------------------------------------- shared pieces

_TLS_VER = _r(0, 4)  # SSL 3.0 .. TLS 1.3 minor version byte
_TLS_REC = LenField(3, 2, lo=1, hi=(1 << 14) + 2048, op="any")
_DNS_OPCODE = frozenset(v for v in range(256) if ((v >> 3) & 0xF) in (0, 1, 2, 4, 5))
_DNS_B3 = frozenset(v for v in range(256) if not v & 0x40)  # Z bit clear
_NTP_B0 = frozenset(li << 6 | vn << 3 | mode for li in range(4) for vn in range(1, 5) for mode in range(1, 6))
_MODBUS_FN = frozenset(
    f | e for f in (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43) for e in (0, 0x80)
)
_SNMP_VER = frozenset({0, 1, 3})
_METHODS = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"PATCH", b"TRACE", b"PROPFIND",
    b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT", b"SEARCH",
)  # fmt: skip
_HTTP_METHODS = tuple(m + b" " for m in _METHODS)
_HTTP_REQUESTS = (
    tuple(m + b"/" for m in _HTTP_METHODS)
    + tuple(m + b"http://" for m in _HTTP_METHODS)
    + (b"CONNECT ", b"OPTIONS * HTTP/1.")
)
"""A method and an origin-form or absolute http URI (RTSP and SIP use rtsp:/sip: URIs), or CONNECT."""
_SIP_METHODS = tuple(
    m + b" sip"
    for m in (
        b"INVITE", b"REGISTER", b"OPTIONS", b"ACK", b"BYE", b"CANCEL", b"SUBSCRIBE", b"NOTIFY", b"MESSAGE",
        b"INFO", b"PRACK", b"UPDATE", b"REFER", b"PUBLISH",
    )
)  # fmt: skip
_QUIC_VERSIONS = (  # (value, mask): v1, v2, IETF drafts ff0000xx, Facebook mvfst faceb00x, greased
    (b"\x00\x00\x00\x01", b"\xff\xff\xff\xff"),
    (b"\x6b\x33\x43\xcf", b"\xff\xff\xff\xff"),
    (b"\xff\x00\x00\x00", b"\xff\xff\xff\x00"),
    (b"\xfa\xce\xb0\x00", b"\xff\xff\xff\xf0"),
    (b"\x0a\x0a\x0a\x0a", b"\x0f\x0f\x0f\x0f"),  # reserved 0x?a?a?a?a: forces version negotiation
)
_GQUIC_VERSIONS = ((b"Q0", b"\xff\xff"), (b"T0", b"\xff\xff"))  # Google QUIC Q046+/T05x in long headers
_NB_NAME = _r(ord("A"), ord("P"))  # first-level encoded NetBIOS name characters
_RAKNET_MAGIC = b"\x00\xff\xff\x00\xfe\xfe\xfe\xfe\xfd\xfd\xfd\xfd\x12\x34\x56\x78"


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
    return sig(name, transport, "any", *tests, min_len=p + 17, weight=3, check="dns-answer" if answer_only else "dns")


def _dnscrypt(prefix: int, transport: str) -> Signature:
    """A DNS query whose first name starts ``2.dnscrypt-cert.`` (DNSCrypt's certificate query)."""
    p = prefix
    tests: tuple[Test, ...] = (
        Bits(p + 2, b"\x80", b"\x00"),  # a query
        Lit(p + 4, b"\x00"),
        ByteIn(p + 5, _r(1, 255)),
        Lit(p + 12, b"\x012\x0ddnscrypt-cert", nocase=True),
    )
    if prefix:
        tests = (LenField(0, 2, add=2, op="ge", lo=17),) + tests
    return sig(f"dnscrypt-cert-query{'-tcp' if prefix else ''}", transport, "client", *tests, weight=3, check="dns",
               priority=10)  # fmt: skip


def _mqtt(name: bytes, varint: int) -> Signature:
    """MQTT CONNECT with a ``varint``-byte remaining length and protocol name ``name``."""
    tests: list[Test] = [Lit(0, b"\x10")]
    for i in range(1, varint):
        tests.append(ByteIn(i, _r(0x80, 0xFF)))
    tests.append(ByteIn(varint, _r(0, 0x7F)))
    tests.append(Lit(varint + 1, len(name).to_bytes(2, "big") + name))
    tests.append(ByteIn(varint + 3 + len(name), frozenset({3, 4, 5})))  # protocol level
    return sig("mqtt-connect", "tcp", "client", *tests, weight=3)


def _snmp(form: int) -> Signature:
    """SNMP message (BER SEQUENCE, version INTEGER 0/1/3) with a 1/2/3-byte BER length (``form``)."""
    if form == 1:
        ln: tuple[Test, ...] = (LenField(1, 1, add=2, op="eq", hi=0x7F),)
    else:
        ln = (Lit(1, bytes([0x80 | (form - 1)])), LenField(2, form - 1, add=1 + form, op="eq"))
    v = 1 + form
    tests = (Lit(0, b"\x30"),) + ln + (Lit(v, b"\x02\x01"), ByteIn(v + 2, _SNMP_VER), ByteIn(v + 3, frozenset({4, 0x30})))
    return sig("snmp", "udp", "any", *tests, weight=3)


_LDAP_OPS = frozenset({0x60, 0x61, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F,
                       0x77, 0x78, 0x42, 0x50, 0x73, 0x79})  # fmt: skip


def _ldap(lenform: int, idlen: int) -> Signature:
    """An LDAP message: SEQUENCE (``lenform``: 0 short length, else 0x80|n), messageID of ``idlen`` bytes, an operation."""
    if lenform == 0:
        head: tuple[Test, ...] = (Lit(0, b"\x30"), LenField(1, 1, add=2, op="ge", lo=5, hi=0x7F))
        at = 2
    else:
        head = (Lit(0, b"\x30" + bytes([0x80 | lenform])), LenField(2, lenform, add=2 + lenform, op="ge", lo=5))
        at = 2 + lenform
    tests = head + (Lit(at, b"\x02" + bytes([idlen])), ByteIn(at + 2 + idlen, _LDAP_OPS))
    return sig("ldap", "any", "any", *tests, weight=3, priority=30, min_len=at + 4 + idlen)


_KRB_TAGS = frozenset({0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x7E})  # AS/TGS-REQ/REP, AP-REQ/REP, KRB-ERROR


def _kerberos(prefix: int, lenform: int) -> Signature:
    """A Kerberos message: APPLICATION tag, ``lenform``-byte long length, SEQUENCE, then pvno 5 ([0] or [1])."""
    p = prefix
    n = lenform
    tests: tuple[Test, ...] = (
        ByteIn(p, _KRB_TAGS),
        Lit(p + 1, bytes([0x80 | n])),
        Lit(p + 2 + n, b"\x30" + bytes([0x80 | n])),
        OneOf(p + 4 + 2 * n, (b"\xa0\x03\x02\x01\x05", b"\xa1\x03\x02\x01\x05")),
    )
    if prefix:
        tests = (LenField(0, 4, add=4, op="ge", lo=16, hi=1 << 20),) + tests
    return sig("kerberos", "tcp" if prefix else "udp", "any", *tests, weight=3, priority=30)


_NFS_PROGRAMS = frozenset({0xA3, 0xA5, 0xB5, 0xB8})  # 100003 nfs, 100005 mountd, 100021 nlockmgr, 100024 status


def _sunrpc_call(prefix: int, name: str, program: bytes, priority: int, last: frozenset[int] | None = None) -> Signature:
    """An ONC RPC call (RFC 5531): msg_type 0, rpcvers 2, ``program`` (first bytes; ``last``: its 4th byte)."""
    p = prefix
    tests: tuple[Test, ...] = (Lit(p + 4, b"\x00\x00\x00\x00\x00\x00\x00\x02"), Lit(p + 12, program))
    if last is not None:
        tests += (ByteIn(p + 15, last),)
    if prefix:
        tests = (Bits(0, b"\x80", b"\x80"), LenField(0, 4, add=4, op="ge", lo=24, mask=0x7FFFFFFF)) + tests
    return sig(name + ("-tcp" if prefix else ""), "tcp" if prefix else "udp", "client", *tests, weight=3,
               priority=priority, min_len=p + 24)  # fmt: skip


_OPENVPN_HMAC = (0, 28, 40, 72)
"""tls-auth bytes after the session id: none, or an HMAC (SHA-1, SHA-256, SHA-512) + packet id + time."""


def _openvpn_reset(prefix: int, transport: str) -> tuple[Signature, ...]:
    """OpenVPN hard resets: the client's (v2/v3) and the server's, which acknowledges the client's packet 0.

    The client's session id sits at 1; the server's ack carries it back after its own session id,
    the tls-auth bytes, the ack count and one packet id (small state: ``Echo``).  Without the
    client in view the exact lengths with a zero packet id still tell (weight 2); under
    tls-crypt only packet id 1 and the time are in clear, at exact lengths.  Under tls-crypt-v2
    (OpenVPN 2.6, seen on a real pair) the packet id may start 0x0f, the client's v3 reset ends
    with its wrapped key, whose last two bytes are its length (299 with the default metadata),
    and the server's reset may carry 6 more bytes (72).
    """
    p = prefix
    pre: tuple[Test, ...] = (LenField(0, 2, add=2, op="eq", lo=14, hi=1500),) if prefix else ()
    sfx = "-tcp" if prefix else ""
    client_op = ByteIn(p, frozenset({0x38, 0x50}))
    exact = tuple(  # no ack and packet id 0 after the session id and tls-auth bytes: an exact length
        sig(f"openvpn-client-reset{sfx}", transport, "client", *pre, client_op,
            *((Lit(p + 1 + hmac, b"\x00\x00\x00\x01"),) if hmac else ()), Lit(p + 9 + hmac, bytes(5)),
            lengths=(p + 14 + hmac,))  # fmt: skip
        for hmac in _OPENVPN_HMAC
    )
    first_id = OneOf(p + 9, (b"\x00\x00\x00\x01", b"\x0f\x00\x00\x01"))  # tls-crypt packet id 1 (v2: 0x0f...)
    crypt = (
        sig(f"openvpn-client-reset{sfx}", transport, "client", *pre, client_op, first_id,
            ByteIn(p + 13, _r(0x55, 0x7F)), lengths=(p + 54,)),  # fmt: skip
        sig(f"openvpn-client-reset{sfx}", transport, "client", *pre, Lit(p, b"\x50"), first_id,
            ByteIn(p + 13, _r(0x55, 0x7F)), Tail(2, b"\x01\x2b"), lengths=(p + 54 + 299,)),  # fmt: skip
        sig(f"openvpn-server-reset-alone{sfx}", transport, "server", *pre, Lit(p, b"\x40"), first_id,
            ByteIn(p + 13, _r(0x55, 0x7F)), lengths=(p + 66, p + 72)),  # fmt: skip
    )
    client = sig(f"openvpn-client-reset{sfx}", transport, "client", *pre, client_op,
                 min_len=p + 14, max_len=p + 400, weight=1, confirm_only=True)  # fmt: skip
    servers = tuple(
        sig(f"openvpn-server-reset{sfx}", transport, "server", *pre, Lit(p, b"\x40"),
            Lit(p + 9 + hmac, b"\x01"), Echo(p + 14 + hmac, 8, f"openvpn-client-reset{sfx}", p + 1),
            weight=3)  # fmt: skip
        for hmac in _OPENVPN_HMAC
    )
    alone = tuple(
        sig(f"openvpn-server-reset-alone{sfx}", transport, "server", *pre, Lit(p, b"\x40"),
            Lit(p + 9 + hmac, b"\x01\x00\x00\x00\x00"), lengths=(p + 26 + hmac,))  # fmt: skip
        for hmac in _OPENVPN_HMAC
    )
    return exact + crypt + (client,) + servers + alone


def _stun() -> tuple[Signature, ...]:
    """STUN/TURN (RFC 5389): two top bits 0, length = payload - 20 (multiple of 4), magic cookie."""
    return (
        sig("stun", "any", "any", Bits(0, b"\xc0", b"\x00"), LenField(2, 2, add=20, op="eq", mask=0xFFFC),
            Bits(3, b"\x03", b"\x00"), Lit(4, b"\x21\x12\xa4\x42"), weight=3, priority=30),  # fmt: skip
        sig("stun-classic-request", "udp", "client", Lit(0, b"\x00\x01"), LenField(2, 2, add=20, op="eq"),
            Bits(3, b"\x03", b"\x00"), weight=1, confirm_only=True, priority=80),  # fmt: skip
    )

# --------------------------------------------------------------------------- the table

_WEB_AND_MAIL: tuple[Protocol, ...] = (
    Protocol(
        "tls", "TLS",
        (
            sig("tls-client-hello", "tcp", "client", Lit(0, b"\x16\x03"), ByteIn(2, _TLS_VER), _TLS_REC, Lit(5, b"\x01"),
                Lit(9, b"\x03"), ByteIn(10, _TLS_VER), weight=3, check="tls-client-hello"),
            sig("tls-server-hello", "tcp", "server", Lit(0, b"\x16\x03"), ByteIn(2, _TLS_VER), _TLS_REC, Lit(5, b"\x02"),
                Lit(9, b"\x03"), ByteIn(10, _TLS_VER), weight=3),
            sig("sslv2-client-hello", "tcp", "client", Bits(0, b"\x80", b"\x80"), Lit(2, b"\x01"),
                OneOf(3, (b"\x00\x02", b"\x03\x00", b"\x03\x01", b"\x03\x02", b"\x03\x03")), min_len=11),
            sig("tls-handshake", "tcp", "any", Lit(0, b"\x16\x03"), ByteIn(2, _TLS_VER), _TLS_REC, weight=1),
            sig("tls-record", "tcp", "any", ByteIn(0, frozenset({0x14, 0x15, 0x17})), Lit(1, b"\x03"),
                ByteIn(2, _r(1, 4)), _TLS_REC, weight=1),
        ),
        Carriers(
            names=("https", "imaps", "pop3s", "ftps", "ftps-data", "ldaps", "domain-s", "submissions", "nntps",
                   "telnets", "ircs-u", "sips", "secure-mqtt", "ipps", "pcsync-https", "radsec",
                   "xmpp-client"),  # XEP-0368 direct TLS is common on the client port too
            name_re=r"https|ssl|tls",
            desc_re=r"\b(TLS|SSL|HTTPS)\b",
            exclude_re=r"dtls",
            after_plaintext=("smtp", "submission", "imap", "pop3", "ftp", "ldap", "nntp", "xmpp-client",
                             "xmpp-server", "postgresql", "mysql", "ms-sql-s", "irc", "sieve", "ms-wbt-server",
                             "http", "http-alt", "socks"),  # socks: a proxy carries anything after its handshake
        ),
        zeek="ssl", wireshark=("tls", "ssl"), ndpi=("TLS", "SMTPS", "IMAPS", "POPS", "FTPS", "ApplePush"),
        how="handshake record (ClientHello/ServerHello, SSLv2 hello); bare records weakly",
        extracts="SNI `tls.client.server_name`, offered ALPN list `portclass.tls.client.alpn`, JA4 `portclass.tls.client.ja4`; "
                 "an SNI of `classifier/evidence/apps.py` names `network.application`",
    ),
    Protocol(
        "http", "HTTP",
        (
            sig("http-request", "tcp", "client", OneOf(0, _HTTP_REQUESTS), min_len=16, weight=3),
            sig("http-response", "tcp", "server", OneOf(0, (b"HTTP/1.0 ", b"HTTP/1.1 ")), ByteIn(9, _r(0x31, 0x35)),
                min_len=12, weight=3),
            sig("http2-preface", "tcp", "client", Lit(0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), weight=3),
        ),
        Carriers(
            names=("http", "www", "www-http", "http-alt", "http-mgmt", "gss-http", "http-rpc-epmap",
                   "multiling-http", "webpush", "www-dev", "ipp", "xmpp-bosh"),
            name_re=r"http(?!s)",
            desc_re=r"\bHTTP\b(?!S)|\bREST\b|\bSOAP\b",
            exclude_re=r"https|ssl|tls",
            after_plaintext=("socks",),
        ),
        zeek="http", wireshark=("http", "http2", "ocsp", "json", "xml", "soap"),
        ndpi=("HTTP", "HTTP_Proxy", "HTTP_Connect", "SOAP", "WebSocket", "OCSP"),
        how="request line (method and origin-form or http:// URI), status line, HTTP/2 preface",
        extracts="method, URI, Host, User-Agent: `http.request.method`, `url.original`, `url.domain`, `user_agent.original`",
    ),
    Protocol(
        "elasticsearch", "Elasticsearch",
        (
            sig("elasticsearch-request", "tcp", "client", OneOf(0, tuple(m + b"/_" for m in _HTTP_METHODS)),
                min_len=16, weight=3, priority=10),
            sig("elasticsearch-response", "tcp", "server", OneOf(0, (b"HTTP/1.0 ", b"HTTP/1.1 ")),
                ByteIn(9, _r(0x31, 0x35)), weight=3, priority=10, check="keyword",
                keywords=(b"x-elastic-product", b"you know, for search"), window=512),
        ),
        Carriers(names=("wap-wsp",), desc_re=r"elasticsearch"),
        zeek="http", wireshark=("http", "json"), ndpi=("Elasticsearch",), over="http",
        how="HTTP request for a /_ API path, or a response naming the product",
        extracts="as HTTP; shown as `network.protocol` http, `network.application` elasticsearch",
    ),
    Protocol(
        "ntlm", "NTLM",
        (
            sig("http-ntlm-auth", "tcp", "client", OneOf(0, _HTTP_REQUESTS), min_len=16, weight=3, priority=10,
                check="keyword-exact", keywords=(b" TlRMTVNTUA",), window=512),  # base64 of "NTLMSSP\0"
        ),
        zeek="ntlm", wireshark=("http", "ntlmssp"), ndpi=(), over="http",
        how="HTTP request whose Authorization header carries NTLMSSP (NTLM or Negotiate); NTLM in SMB comes later",
        extracts="as HTTP; shown as `network.protocol` http, `network.application` ntlm",
    ),
    Protocol(
        "ssh", "SSH",
        (sig("ssh-banner", "tcp", "any", OneOf(0, (b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-")), weight=3),),
        Carriers(names=("ssh", "netconf-ssh", "sdo-ssh", "netconf-ch-ssh", "snmpssh", "snmpssh-trap", "tl1-ssh",
                        "ssh-mgmt"), desc_re=r"\bSSH\b"),
        zeek="ssh", wireshark=("ssh",), ndpi=("SSH",),
        how="identification string SSH-2.0-/SSH-1.99-",
        extracts="software both ways: `portclass.ssh.client_software`, `portclass.ssh.server_software`",
    ),
    Protocol(
        "netbios", "NetBIOS",
        (
            sig("netbios-ns", "udp", "any", Lit(4, b"\x00"), ByteIn(5, _r(0, 1)), Lit(12, b"\x20"),
                ByteIn(13, _NB_NAME), ByteIn(14, _NB_NAME), ByteIn(15, _NB_NAME), Lit(46, b"\x00"),
                ByteIn(47, frozenset({0x20, 0x21})), min_len=50, weight=3, priority=20, alt="dns"),
            sig("netbios-datagram", "udp", "any", ByteIn(0, _r(0x10, 0x12)), Lit(14, b"\x20"), ByteIn(15, _NB_NAME),
                ByteIn(16, _NB_NAME), min_len=82, weight=3, priority=20),
            sig("netbios-session-request", "tcp", "client", Lit(0, b"\x81\x00"), LenField(2, 2, add=4, op="eq"),
                Lit(4, b"\x20"), ByteIn(5, _NB_NAME), weight=3),
        ),
        Carriers(names=("netbios-ns", "netbios-dgm", "netbios-ssn")),
        zeek=None, wireshark=("nbns", "nbss", "nbdgm"), ndpi=("NetBIOS",),
        how="name-service message with a first-level encoded name (before DNS), datagram, session request",
    ),
    Protocol(
        "dnscrypt", "DNSCrypt",
        (_dnscrypt(0, "udp"), _dnscrypt(2, "tcp")),
        Carriers(names=("domain", "https", "domain-s")),
        zeek="dns", wireshark=("dns",), ndpi=("DNScrypt",), over="dns",
        how="DNS query for 2.dnscrypt-cert.* (the certificate query before encrypted DNS)",
        extracts="as DNS; shown as `network.protocol` dns, `network.application` dnscrypt",
    ),
    Protocol(
        "dns", "DNS",
        (_dns(0, "udp", "dns"), _dns(0, "udp", "dns-answer", answer_only=True), _dns(2, "tcp", "dns-tcp")),
        Carriers(names=("domain", "mdns", "llmnr", "menandmice-dns", "dns2go")),
        zeek="dns", wireshark=("dns", "mdns", "llmnr"), ndpi=("DNS", "AVASTSecureDNS", "MDNS", "LLMNR"),
        how="header sanity and a walk of the first name (question, or answer for mDNS announcements)",
        extracts="question: `dns.question.name`, `dns.question.type`",
    ),
    Protocol(
        "smtp", "SMTP",
        (
            sig("smtp-greeting", "tcp", "server", Lit(0, b"220"), OneOf(3, (b" ", b"-")), min_len=6, check="keyword",
                keywords=(b"smtp",), window=160),
            sig("smtp-hello", "tcp", "client", OneOf(0, (b"EHLO ", b"HELO "), nocase=True)),
        ),
        Carriers(names=("smtp", "submission", "rsmtp")),
        zeek="smtp", wireshark=("smtp", "imf"), ndpi=("SMTP", "SMTPS"),  # nDPI: SMTPS after STARTTLS
        how="220 greeting naming SMTP, EHLO/HELO",
        extracts="greeting line: `portclass.server_greeting`",
    ),
    Protocol(
        "irc", "IRC",
        (
            sig("irc-register", "tcp", "client", OneOf(0, (b"NICK ", b"CAP LS", b"CAP REQ "))),
            sig("irc-user", "tcp", "client", Lit(0, b"USER "), check="keyword", keywords=(b"\nnick ",), window=256,
                priority=10),
            sig("irc-server", "tcp", "server", Lit(0, b":"), ByteIn(1, _PRINT), check="keyword",
                keywords=(b" notice ", b" 001 ", b" 020 "), window=96),
        ),
        Carriers(names=("irc", "ircu", "ircs-u", "ircd"), name_re=r"^irc"),
        zeek="irc", wireshark=("irc",), ndpi=("IRC",),
        how="NICK/CAP registration, USER followed by NICK, a server's prefixed NOTICE/001",
    ),
    Protocol(
        "ftp", "FTP",
        (
            sig("ftp-greeting", "tcp", "server", Lit(0, b"220"), OneOf(3, (b" ", b"-")), min_len=6, check="keyword",
                keywords=(b"ftp", b"filezilla"), window=160),
            sig("ftp-command", "tcp", "client",
                OneOf(0, (b"AUTH TLS", b"AUTH SSL", b"FEAT\r\n", b"SYST\r\n", b"OPTS UTF8"), nocase=True)),
            sig("ftp-user", "tcp", "client", Lit(0, b"USER ", nocase=True), weight=1, priority=60),
        ),
        Carriers(names=("ftp",)),
        zeek="ftp", wireshark=("ftp",), ndpi=("FTP_CONTROL",),
        how="220 greeting naming FTP, FEAT/SYST/AUTH TLS; USER alone weakly",
        extracts="greeting line: `portclass.server_greeting`",
    ),
    Protocol(
        "pop3", "POP3",
        (
            sig("pop3-greeting", "tcp", "server", Lit(0, b"+OK "), min_len=6),  # not Redis' "+OK\r\n"
            sig("pop3-command", "tcp", "client", OneOf(0, (b"CAPA\r\n", b"STLS\r\n", b"APOP "), nocase=True)),
        ),
        Carriers(names=("pop3",)),
        zeek="pop3", wireshark=("pop",), ndpi=("POP3", "POPS"),
        how="+OK greeting, CAPA/STLS/APOP",
        extracts="greeting line: `portclass.server_greeting`",
    ),
    Protocol(
        "imap", "IMAP",
        (sig("imap-greeting", "tcp", "server", OneOf(0, (b"* OK", b"* PREAUTH")), min_len=6),),
        Carriers(names=("imap",)),
        zeek="imap", wireshark=("imap",), ndpi=("IMAP", "IMAPS"),
        how="untagged * OK / * PREAUTH greeting",
        extracts="greeting line: `portclass.server_greeting`",
    ),
    Protocol(
        "nntp", "NNTP",
        (
            sig("nntp-greeting", "tcp", "server", OneOf(0, (b"200 ", b"201 ")), check="keyword",
                keywords=(b"nntp", b"news", b"inn "), window=160),
            sig("nntp-command", "tcp", "client", OneOf(0, (b"MODE READER\r\n", b"CAPABILITIES\r\n"), nocase=True)),
        ),
        Carriers(names=("nntp",)),
        zeek=None, wireshark=("nntp",), ndpi=("Usenet",),
        how="200/201 greeting naming news, MODE READER",
        extracts="greeting line: `portclass.server_greeting`",
    ),
    Protocol(
        "quic", "QUIC",
        (
            sig("quic-long-header", "udp", "any", Bits(0, b"\xc0", b"\xc0"),
                OneOf(1, tuple(v for v, _ in _QUIC_VERSIONS), tuple(m for _, m in _QUIC_VERSIONS)),
                ByteIn(5, _r(0, 20)), min_len=20, weight=3),
            sig("gquic-long-header", "udp", "any", Bits(0, b"\xc0", b"\xc0"),
                OneOf(1, tuple(v for v, _ in _GQUIC_VERSIONS), tuple(m for _, m in _GQUIC_VERSIONS)),
                ByteIn(3, _DIGITS), ByteIn(4, _DIGITS), min_len=20, weight=3),
            sig("gquic", "udp", "client", ByteIn(0, frozenset({0x09, 0x0D, 0x19, 0x1D})), Lit(9, b"Q0"),
                ByteIn(11, _DIGITS), min_len=20, weight=3),
        ),
        Carriers(names=("https", "domain-s"), desc_re=r"\bQUIC\b"),
        zeek="quic", wireshark=("quic", "gquic"), ndpi=("QUIC",),
        how="long header with a known version (v1, v2, drafts, mvfst, Google Q0xx/T0xx)",
    ),
    Protocol(
        "smb", "SMB",
        (sig("smb", "tcp", "any", Lit(0, b"\x00"), ByteIn(1, _r(0, 1)), OneOf(4, (b"\xffSMB", b"\xfeSMB", b"\xfdSMB")),
             weight=3),),
        Carriers(names=("microsoft-ds", "netbios-ssn", "cifs", "smbdirect")),
        zeek="smb", wireshark=("smb", "smb2", "smb3"), ndpi=("SMBv1", "SMBv23", "NetBIOS"),  # in a NetBIOS session
        how="session-service header and the \\xffSMB/\\xfeSMB/\\xfdSMB magic",
    ),
    Protocol(
        "dcerpc", "DCE/RPC",
        (sig("dcerpc", "tcp", "any", Lit(0, b"\x05"), ByteIn(1, _r(0, 1)), ByteIn(2, _r(0, 19)),
             OneOf(4, (b"\x10\x00\x00\x00", b"\x00\x00\x00\x00")), LenField(8, 2, op="ge", lo=16, little=True),
             min_len=16, weight=3),
         sig("dcerpc-udp", "udp", "any", Lit(0, b"\x04"), ByteIn(1, _r(0, 10)), OneOf(4, (b"\x10\x00\x00", b"\x00\x00\x00")),
             min_len=80)),
        Carriers(names=("epmap", "loc-srv", "ms-rpc", "microsoft-ds", "netbios-ssn", "http-rpc-epmap")),
        zeek="dce_rpc", wireshark=("dcerpc", "epm"), ndpi=("DCERPC",),
        how="PDU header: version 5 with data representation and fragment length; connectionless version 4",
    ),
    Protocol(
        "rdp", "RDP",
        (
            sig("rdp-connection-request", "tcp", "client", Lit(0, b"\x03\x00"), LenField(2, 2, op="eq"),
                LenField(4, 1, add=5, op="eq"), Lit(5, b"\xe0\x00\x00"), ByteIn(11, frozenset({ord("C"), 0x01})),
                weight=3),
            sig("rdp-connection-confirm", "tcp", "server", Lit(0, b"\x03\x00"), LenField(2, 2, op="eq"),
                LenField(4, 1, add=5, op="eq"), Lit(5, b"\xd0\x00\x00"), ByteIn(11, frozenset({0x02, 0x03})),
                weight=3),
        ),
        Carriers(names=("ms-wbt-server", "vmrdp")),
        zeek="rdp", wireshark=("rdp",), ndpi=("RDP",),
        how="TPKT + X.224 connection request with a cookie or RDP negotiation, and its confirm",
    ),
    Protocol(
        "s7comm", "S7comm",
        (
            sig("s7comm", "tcp", "any", Lit(0, b"\x03\x00"), LenField(2, 2, op="ge"), Lit(4, b"\x02\xf0\x80"),
                OneOf(7, (b"\x32", b"\x72")), ByteIn(8, frozenset({1, 2, 3, 7})), weight=3),
            sig("cotp-tsap-request", "tcp", "client", Lit(0, b"\x03\x00"), LenField(2, 2, op="eq"),
                Lit(5, b"\xe0\x00\x00"), ByteIn(11, frozenset({0xC0, 0xC1, 0xC2})), weight=1, confirm_only=True),
        ),
        Carriers(names=("iso-tsap",)),
        zeek=None, wireshark=("s7comm", "s7comm-plus", "cotp"), ndpi=("S7Comm", "S7CommPlus"),
        how="TPKT + COTP data + S7 protocol id 0x32/0x72; a TSAP connection request weakly",
    ),
)

_REMOTE_ACCESS: tuple[Protocol, ...] = (
    Protocol(
        "nomachine", "NoMachine NX",
        (
            sig("nomachine-client", "tcp", "client", Lit(0, b"NXSH-"), ByteIn(5, _DIGITS), weight=3),
            sig("nomachine-server", "tcp", "server", Lit(0, b"NXD-"), ByteIn(4, _DIGITS), weight=3),
        ),
        Carriers(names=("nxsession",)),
        zeek=None, wireshark=(), ndpi=("NoMachine",),
        how="NX banners NXSH-/NXD- before its TLS",
    ),
)

_IOT_AND_INDUSTRIAL: tuple[Protocol, ...] = (
    Protocol(
        "mqtt", "MQTT",
        (_mqtt(b"MQTT", 1), _mqtt(b"MQTT", 2), _mqtt(b"MQTT", 3), _mqtt(b"MQIsdp", 1), _mqtt(b"MQIsdp", 2)),
        Carriers(names=("mqtt",)),
        zeek="mqtt", wireshark=("mqtt",), ndpi=("MQTT",),
        how="CONNECT with protocol name MQTT/MQIsdp and a known level",
    ),
    Protocol(
        "modbus", "Modbus/TCP",
        (sig("modbus", "tcp", "any", Lit(2, b"\x00\x00"), LenField(4, 2, add=6, op="eq", lo=2, hi=254),
             ByteIn(7, _MODBUS_FN), min_len=8, priority=80),),
        Carriers(names=("mbap", "mbap-s")),
        zeek="modbus", wireshark=("modbus/tcp", "modbus"), ndpi=("Modbus",),
        how="MBAP header (protocol 0, length = rest of the ADU) and a function code; after LDAP/Kerberos",
    ),
    Protocol(
        "dnp3", "DNP3",
        (sig("dnp3", "any", "any", Lit(0, b"\x05\x64"), ByteIn(2, _r(5, 255)), min_len=10),),
        Carriers(names=("dnp", "dnp-sec")),
        zeek="dnp3", wireshark=("dnp", "dnp3"), ndpi=("DNP3",),
        how="link-layer start bytes 05 64 and a length of at least 5",
    ),
    Protocol(
        "iec104", "IEC 60870-5-104",
        (
            sig("iec104-u", "tcp", "any", Lit(0, b"\x68\x04"), ByteIn(2, frozenset({7, 0x0B, 0x13, 0x23, 0x43, 0x83})),
                Lit(3, b"\x00\x00\x00"), lengths=(6,), weight=3),
            sig("iec104-i", "tcp", "any", Lit(0, b"\x68"), LenField(1, 1, add=2, op="ge", lo=10, hi=253),
                Bits(2, b"\x01", b"\x00"), Bits(4, b"\x01", b"\x00"), ByteIn(6, _r(1, 127)), weight=2),
        ),
        Carriers(names=("iec-104", "iec-104-sec")),
        zeek=None, wireshark=("iec 60870-5-104", "104apci", "104asdu"), ndpi=("IEC60870",),
        how="APCI start 0x68, length, U-frame or I-frame with an ASDU type",
    ),
    Protocol(
        "enip", "EtherNet/IP",
        (sig("enip", "any", "any", OneOf(0, (b"\x65\x00", b"\x66\x00", b"\x63\x00", b"\x04\x00", b"\x6f\x00",
                                              b"\x70\x00", b"\x64\x00")),
             LenField(2, 2, add=24, op="eq", little=True), Lit(20, b"\x00\x00\x00\x00"), weight=3),),  # fmt: skip
        Carriers(names=("EtherNet-IP-1", "EtherNet-IP-2", "EtherNet-IP-s", "ethernet-ip-1", "ethernet-ip-2")),
        zeek="enip", wireshark=("enip", "cip"), ndpi=("EthernetIP",),
        how="encapsulation header: known command, length = payload - 24, options 0",
    ),
    Protocol(
        "bacnet", "BACnet/IP",
        (
            sig("bacnet", "udp", "any", Lit(0, b"\x81"), ByteIn(1, frozenset({0x0A, 0x0B})), LenField(2, 2, op="eq"),
                Lit(4, b"\x01"), weight=3),
            sig("bacnet-bvlc", "udp", "any", Lit(0, b"\x81"), ByteIn(1, _r(0, 9)), LenField(2, 2, op="eq", lo=4)),
        ),
        Carriers(names=("bacnet",)),
        zeek=None, wireshark=("bacnet", "bvlc", "bacapp"), ndpi=("BACnet",),
        how="BVLC type 0x81, function, length = payload; NPDU version 1",
    ),
    Protocol(
        "opcua", "OPC UA",
        (sig("opcua", "tcp", "any", OneOf(0, (b"HELF", b"ACKF", b"OPNF", b"ERRF", b"MSGF", b"CLOF", b"RHEF")),
             LenField(4, 4, op="ge", lo=8, hi=1 << 24, little=True), weight=3),),
        Carriers(names=("opcua-tcp", "opcua-tls", "opcua-udp"), name_re=r"^opc-?ua"),
        zeek=None, wireshark=("opcua",), ndpi=("OPC-UA",),
        how="message type HEL/ACK/OPN/MSG/ERR/CLO + chunk F and a little-endian size",
    ),
    Protocol(
        "hart-ip", "HART-IP",
        (
            sig("hart-ip-request", "any", "client", ByteIn(0, frozenset({1, 2})), Lit(1, b"\x00"), ByteIn(2, _r(0, 4)),
                LenField(6, 2, op="eq", lo=8)),
            sig("hart-ip-response", "any", "server", ByteIn(0, frozenset({1, 2})), ByteIn(1, frozenset({1, 3, 15})),
                ByteIn(2, _r(0, 4)), LenField(6, 2, op="eq", lo=8), Echo(4, 2, "hart-ip-request", 4), weight=3),
        ),
        Carriers(names=("hart-ip",)),
        zeek=None, wireshark=("hart_ip", "hart-ip"), ndpi=("HART-IP",),
        how="version, message type and id, byte count = payload; a response echoing the request's sequence",
    ),
    Protocol(
        "dlms", "DLMS/COSEM (IEC 62056)",
        (sig("dlms-hdlc", "tcp", "any", Lit(0, b"\x7e"), Bits(1, b"\xf8", b"\xa0"),
             LenField(1, 2, add=2, op="eq", mask=0x7FF, lo=7), Tail(1, b"\x7e"), weight=3),
         sig("dlms-wrapper", "tcp", "any", Lit(0, b"\x00\x01\x00"), Lit(4, b"\x00"),
             LenField(6, 2, add=8, op="eq", lo=1),
             ByteIn(8, frozenset({0x60, 0x61, 0x62, 0x63, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8,
                                  0xDB, 0xDD, 0xE6, 0xE7, 0xD8, 0x0E})), weight=3),),  # fmt: skip
        Carriers(names=("dlms-cosem",)),
        zeek=None, wireshark=("dlms", "wrapper"), ndpi=("IEC62056",),
        how="HDLC frame (7e, format a0, length, 7e) or wrapper header (version 1, length) and a known APDU tag",
    ),
    Protocol(
        "hl7", "HL7 (MLLP)",
        (sig("hl7-mllp", "tcp", "any", Lit(0, b"\x0bMSH|"), weight=3),),
        Carriers(names=("hl7",)),
        zeek=None, wireshark=("hl7",), ndpi=("HL7",),
        how="MLLP start byte 0x0b and an MSH segment",
    ),
    Protocol(
        "coap", "CoAP",
        (
            sig("coap-request", "udp", "client", ByteIn(0, _r(0x40, 0x48) | _r(0x50, 0x58)), ByteIn(1, _r(1, 4)),
                min_len=4, weight=1, confirm_only=True),
            sig("coap-response", "udp", "server", ByteIn(0, _r(0x60, 0x68)),
                ByteIn(1, _r(0x41, 0x45) | _r(0x80, 0x8F) | _r(0xA0, 0xA5)), Echo(2, 2, "coap-request", 2), weight=3),
        ),
        Carriers(names=("coap", "coaps")),
        zeek=None, wireshark=("coap",), ndpi=("COAP", "Dropbox"),  # Dropbox's LAN sync speaks CoAP on 17500
        how="version 1 header with a method code; an acknowledgement echoing its message id",
    ),
    Protocol(
        "tuya", "Tuya LAN",
        (sig("tuya-lp", "udp", "any", Lit(0, b"\x00\x00\x55\xaa"), Tail(4, b"\x00\x00\xaa\x55"), min_len=24, weight=3),),
        Carriers(),
        zeek=None, wireshark=(), ndpi=("TuyaLP",),
        how="prefix 000055aa and suffix 0000aa55",
    ),
)

_NETWORK: tuple[Protocol, ...] = (
    Protocol(
        "dhcp", "DHCP",
        (sig("dhcp", "udp", "any", ByteIn(0, frozenset({1, 2})), Lit(1, b"\x01\x06"), ByteIn(3, _r(0, 16)),
             Lit(236, b"\x63\x82\x53\x63"), min_len=240, weight=3),),
        Carriers(names=("bootps", "bootpc")),
        zeek="dhcp", wireshark=("dhcp", "bootp"), ndpi=("DHCP",),
        how="BOOTP header for Ethernet and the DHCP magic cookie at offset 236",
    ),
    Protocol(
        "kerberos", "Kerberos",
        (_kerberos(0, 1), _kerberos(0, 2), _kerberos(4, 1), _kerberos(4, 2)),
        Carriers(names=("kerberos", "kerberos-sec", "kpasswd", "kerberos-adm", "kerberos-iv")),
        zeek="krb", wireshark=("kerberos", "krb5"), ndpi=("Kerberos",),
        how="APPLICATION tag of a KDC/AP message, SEQUENCE and pvno 5 (TCP: after the record length)",
    ),
    Protocol(
        "ldap", "LDAP",
        tuple(_ldap(f, i) for f in (0, 1, 2, 4) for i in (1, 2)),
        Carriers(names=("ldap", "msft-gc", "cldap")),
        zeek="ldap", wireshark=("ldap", "cldap"), ndpi=("LDAP",),
        how="BER SEQUENCE, INTEGER messageID and an LDAP operation tag (before Modbus)",
    ),
    Protocol(
        "radius", "RADIUS",
        (
            sig("radius-request", "udp", "client", ByteIn(0, frozenset({1, 4, 12, 40, 43})),
                LenField(2, 2, op="eq", lo=20, hi=4096), ByteIn(20, _r(1, 255)), ByteIn(21, _r(2, 255)), min_len=22),
            sig("radius-response", "udp", "server", ByteIn(0, frozenset({2, 3, 5, 11, 41, 42, 44, 45})),
                LenField(2, 2, op="eq", lo=20, hi=4096), Echo(1, 1, "radius-request", 1), weight=3),
        ),
        Carriers(names=("radius", "radius-acct", "radacct", "radius-dynauth", "sa-msg-port"),
                 name_re=r"^radius"),
        zeek="radius", wireshark=("radius",), ndpi=("Radius",),
        how="code, length = payload, first attribute; a reply echoing the request's identifier",
    ),
    Protocol(
        "ntp", "NTP",
        (sig("ntp", "udp", "any", ByteIn(0, _NTP_B0), ByteIn(1, _r(0, 16)), Lit(4, b"\x00"), Lit(8, b"\x00"),
             lengths=(48, 52, 60, 68, 72)),),
        Carriers(names=("ntp",)),
        zeek="ntp", wireshark=("ntp",), ndpi=("NTP",),
        how="48-byte header (+ MAC), version 1-4, mode 1-5, stratum <= 16, short root delay/dispersion",
    ),
    Protocol(
        "snmp", "SNMP",
        (_snmp(1), _snmp(2), _snmp(3)),
        Carriers(name_re=r"snmp", exclude_re=r"ssh|tls"),
        zeek="snmp", wireshark=("snmp",), ndpi=("SNMP",),
        how="BER SEQUENCE with an exact length, version INTEGER 0/1/3",
    ),
    Protocol(
        "syslog", "Syslog",
        tuple(
            sig("syslog", "any", "any", Lit(0, b"<"), *(ByteIn(1 + i, _DIGITS) for i in range(n)), Lit(1 + n, b">"),
                ByteIn(2 + n, _r(0x31, 0x39) | _r(0x41, 0x5A) | {0x20}), min_len=8)  # fmt: skip
            for n in (1, 2, 3)
        ),
        Carriers(names=("syslog", "syslog-tls", "syslog-conn")),
        zeek="syslog", wireshark=("syslog",), ndpi=("Syslog",),
        how="<PRI> with one to three digits",
    ),
    Protocol(
        "tftp", "TFTP",
        (
            sig("tftp-request", "udp", "client", Lit(0, b"\x00"), ByteIn(1, frozenset({1, 2})), ByteIn(2, _PRINT),
                check="keyword", keywords=(b"\x00octet", b"\x00netascii"), window=300, weight=3),
            sig("tftp-ack", "udp", "any", Lit(0, b"\x00\x04\x00"), ByteIn(3, _r(0, 1)), lengths=(4,), weight=1,
                confirm_only=True),
        ),
        Carriers(names=("tftp",)),
        zeek=None, wireshark=("tftp",), ndpi=("TFTP",),
        how="read/write request with a transfer mode; an ACK of block 0/1 weakly",
    ),
    Protocol(
        "slp", "SLP",
        (
            sig("slp-v2", "any", "any", Lit(0, b"\x02"), ByteIn(1, _r(1, 11)), Lit(2, b"\x00"),
                LenField(3, 2, op="eq", lo=16), ByteIn(12, _r(0, 0)), ByteIn(13, _r(1, 16)), weight=3, priority=40),
            sig("slp-v1", "any", "any", Lit(0, b"\x01"), ByteIn(1, _r(1, 10)), LenField(2, 2, op="eq", lo=12),
                ByteIn(6, _r(0x61, 0x7A)), ByteIn(7, _r(0x61, 0x7A)), weight=3, priority=40),
        ),
        Carriers(names=("svrloc",)),
        zeek=None, wireshark=("srvloc",), ndpi=("Service_Location_Protocol",),
        how="version 1/2 header: function id, length = payload, language tag",
    ),
    Protocol(
        "ssdp", "SSDP",
        (sig("ssdp", "udp", "any", OneOf(0, (b"M-SEARCH * HTTP/1.", b"NOTIFY * HTTP/1.", b"HTTP/1.1 200")), weight=3),),
        Carriers(names=("ssdp",)),
        zeek=None, wireshark=("ssdp",), ndpi=("SSDP",),
        how="HTTP over UDP: M-SEARCH, NOTIFY, 200 response",
    ),
    Protocol(
        "bfd", "BFD",
        (sig("bfd", "udp", "any", ByteIn(0, _r(0x20, 0x28)), ByteIn(2, _r(1, 255)), LenField(3, 1, op="eq", lo=24, hi=60),
             Bits(4, b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"), weight=2),),  # fmt: skip
        Carriers(names=("bfd-control", "bfd-echo", "bfd-multi-ctl", "bfd-lag")),
        zeek=None, wireshark=("bfd", "bfd control"), ndpi=("BFD",),
        how="version 1, detect multiplier, length = payload",
    ),
    Protocol(
        "ptp", "PTP",
        (sig("ptp", "udp", "any", ByteIn(0, frozenset(t | s for t in (0, 1, 2, 3, 8, 9, 10, 11, 12, 13) for s in (0, 0x10))),
             ByteIn(1, frozenset({0x02, 0x12})), LenField(2, 2, op="eq", lo=34), Lit(5, b"\x00"), weight=2),),  # fmt: skip
        Carriers(names=("ptp-event", "ptp-general")),
        zeek=None, wireshark=("ptp", "ptpv2"), ndpi=("PTPv2",),
        how="version 2 header: message type, length = payload",
    ),
    Protocol(
        "ldp", "LDP",
        (sig("ldp", "any", "any", Lit(0, b"\x00\x01"), LenField(2, 2, add=4, op="eq", lo=14),
             OneOf(10, (b"\x01\x00", b"\x02\x00", b"\x02\x01", b"\x03\x00", b"\x04\x00", b"\x04\x01", b"\x04\x02")),
             weight=3),),  # fmt: skip
        Carriers(names=("ldp",)),
        zeek=None, wireshark=("ldp",), ndpi=("LDP",),
        how="version 1, PDU length = payload - 4, a known message type",
    ),
    Protocol(
        "bgp", "BGP",
        (sig("bgp", "tcp", "any", Lit(0, b"\xff" * 16), LenField(16, 2, op="ge", lo=19, hi=4096), ByteIn(18, _r(1, 5)),
             weight=3),),
        Carriers(names=("bgp",)),
        zeek=None, wireshark=("bgp",), ndpi=("BGP",),
        how="16-byte all-ones marker, length and message type",
    ),
    Protocol(
        "nat-pmp", "NAT-PMP",
        (
            sig("nat-pmp-map-request", "udp", "client", Lit(0, b"\x00"), ByteIn(1, frozenset({1, 2})),
                Lit(2, b"\x00\x00"), lengths=(12,), weight=1, confirm_only=True),
            sig("nat-pmp-response", "udp", "server", Lit(0, b"\x00"), ByteIn(1, _r(0x80, 0x82)), Lit(2, b"\x00"),
                ByteIn(3, _r(0, 5)), lengths=(12, 16)),
        ),
        Carriers(names=("nat-pmp", "nat-pmp-status")),
        zeek=None, wireshark=("nat-pmp", "pcp"), ndpi=("NAT-PMP",),
        how="version 0 and an opcode; responses with a result code",
    ),
    Protocol(
        "telnet", "Telnet",
        (sig("telnet-iac", "tcp", "any", Lit(0, b"\xff"), ByteIn(1, _r(0xFB, 0xFE)), ByteIn(2, _r(0, 50) | {0xFF})),),
        Carriers(names=("telnet", "telnets")),
        zeek=None, wireshark=("telnet",), ndpi=("Telnet",),
        how="option negotiation (IAC WILL/WONT/DO/DONT)",
    ),
    Protocol(
        "socks", "SOCKS",
        (
            sig("socks5-greeting", "tcp", "client", Lit(0, b"\x05"), ByteIn(1, _r(1, 9)), LenField(1, 1, add=2, op="eq"),
                ByteIn(2, frozenset({0, 1, 2, 3, 0x80})), weight=1, confirm_only=True),
            sig("socks4-request", "tcp", "client", Lit(0, b"\x04"), ByteIn(1, frozenset({1, 2})), Tail(1, b"\x00"),
                min_len=9, weight=1, confirm_only=True),
        ),
        Carriers(names=("socks",)),
        zeek="socks", wireshark=("socks",), ndpi=("SOCKS",),
        how="SOCKS5 method list or SOCKS4 request (weak: a short greeting)",
    ),
    Protocol(
        "rfb", "RFB (VNC)",
        (sig("rfb", "tcp", "any", Lit(0, b"RFB 00"), ByteIn(6, _DIGITS), Lit(7, b"."), lengths=(12,), weight=3),),
        Carriers(names=("rfb", "vnc-server", "vnc"), name_re=r"^vnc"),
        zeek="rfb", wireshark=("vnc",), ndpi=("VNC",),
        how="ProtocolVersion RFB 003.00x",
    ),
    Protocol(
        "sunrpc", "ONC RPC",
        (_sunrpc_call(0, "sunrpc-call", b"\x00\x01\x86", 50), _sunrpc_call(4, "sunrpc-call", b"\x00\x01\x86", 50)),
        Carriers(names=("sunrpc", "portmapper", "rpcbind")),
        zeek="portmapper", wireshark=("portmap", "rpc"), ndpi=("RPC",),
        how="RPC call: message type 0, RPC version 2, a registered program 1000xx",
    ),
    Protocol(
        "nfs", "NFS",
        (_sunrpc_call(0, "nfs-call", b"\x00\x01\x86", 10, _NFS_PROGRAMS), _sunrpc_call(4, "nfs-call", b"\x00\x01\x86", 10, _NFS_PROGRAMS)),
        Carriers(names=("nfs", "nfsd-status", "nfsd-keepalive", "nfsrdma")),
        zeek="nfs", wireshark=("nfs",), ndpi=("NFS",), over="sunrpc",
        how="RPC call to NFS (100003) or its side programs: mount, lock manager, status (as nDPI's NFS)",
    ),
    Protocol(
        "rsync", "rsync",
        (sig("rsync", "tcp", "any", Lit(0, b"@RSYNCD: "), ByteIn(9, _DIGITS), weight=3),),
        Carriers(names=("rsync",)),
        zeek=None, wireshark=("rsync",), ndpi=("RSYNC",),
        how="daemon greeting @RSYNCD: <version>",
    ),
    Protocol(
        "git", "Git",
        (sig("git", "tcp", "client", ByteIn(0, frozenset(b"0")), ByteIn(1, frozenset(b"0123456789abcdef")),
             OneOf(4, (b"git-upload-pack ", b"git-receive-pack ", b"git-upload-archive ")), weight=3),),
        Carriers(names=("git",)),
        zeek=None, wireshark=("git",), ndpi=("Git",),
        how="pkt-line request for git-upload-pack/receive-pack",
    ),
    Protocol(
        "zabbix", "Zabbix",
        (sig("zabbix", "tcp", "any", Lit(0, b"ZBXD"), ByteIn(4, frozenset({1, 3, 5})), weight=3),),
        Carriers(names=("zabbix-agent", "zabbix-trapper")),
        zeek=None, wireshark=("zabbix",), ndpi=("Zabbix",),
        how="ZBXD header and flags",
    ),
)

_TUNNELS_AND_MEDIA: tuple[Protocol, ...] = (
    Protocol(
        "dtls", "DTLS",
        (
            sig("dtls-client-hello", "udp", "client", Lit(0, b"\x16\xfe"), ByteIn(2, frozenset({0xFF, 0xFD, 0xFC})),
                Lit(3, b"\x00\x00"), LenField(11, 2, add=13, op="le"), Lit(13, b"\x01"), weight=3),
            sig("dtls-record", "udp", "any", ByteIn(0, _r(20, 23)), Lit(1, b"\xfe"), ByteIn(2, frozenset({0xFF, 0xFD})),
                LenField(11, 2, add=13, op="le", lo=1), min_len=14),
        ),
        Carriers(name_re=r"dtls", desc_re=r"\bDTLS\b"),
        zeek="dtls", wireshark=("dtls", "dtlsv1.0", "dtlsv1.2"), ndpi=("DTLS",),
        how="record header with version fefd/feff (ClientHello decisive)",
    ),
    Protocol(
        "openvpn", "OpenVPN",
        _openvpn_reset(0, "udp") + _openvpn_reset(2, "tcp"),
        Carriers(names=("openvpn",)),
        zeek=None, wireshark=("openvpn",), ndpi=("OpenVPN",),
        how="hard-reset opcode; the server's reset acknowledging the client's session id (small state); under tls-crypt(-v2) packet id 1, the time and exact lengths",
    ),
    Protocol(
        "wireguard", "WireGuard",
        (
            sig("wireguard-initiation", "udp", "client", Lit(0, b"\x01\x00\x00\x00"), lengths=(148,), weight=3),
            sig("wireguard-response", "udp", "server", Lit(0, b"\x02\x00\x00\x00"), lengths=(92,), weight=3),
            sig("wireguard-cookie", "udp", "server", Lit(0, b"\x03\x00\x00\x00"), lengths=(64,), weight=2),
        ),
        Carriers(names=("wireguard",)),
        zeek=None, wireshark=("wireguard", "wg"), ndpi=("WireGuard",),
        how="handshake message type with its exact length (148/92/64 bytes)",
    ),
    Protocol(
        "ike", "IKE",
        tuple(
            sig(f"ike{'-natt' if p else ''}", "udp", "any", *((Lit(0, b"\x00\x00\x00\x00"),) if p else ()),
                ByteIn(p + 16, frozenset({1, 2, 4, 5, 8, 33, 35, 36, 37, 41, 43, 46})),
                ByteIn(p + 17, frozenset({0x10, 0x20})),
                ByteIn(p + 18, frozenset({2, 4, 5, 6, 32, 33, 34, 35, 36, 37, 38})),
                LenField(p + 24, 4, add=p, op="eq", lo=28), min_len=p + 28, weight=3)  # fmt: skip
            for p in (0, 4)
        ),
        Carriers(names=("isakmp", "ipsec-nat-t")),
        zeek=None, wireshark=("isakmp",), ndpi=("IPSec",),
        how="ISAKMP header: next payload, version 1.0/2.0, exchange type, length = payload (NAT-T: after 4 zero bytes)",
    ),
    Protocol(
        "l2tp", "L2TP",
        (sig("l2tp-control", "udp", "any", Lit(0, b"\xc8"), ByteIn(1, frozenset({2, 3})), LenField(2, 2, op="eq", lo=12),
             weight=3),),
        Carriers(names=("l2f", "l2tp")),
        zeek=None, wireshark=("l2tp",), ndpi=("L2TP",),
        how="control message flags (T, L, S), version 2/3, length = payload",
    ),
    Protocol(
        "gre", "GRE over UDP",
        (sig("gre-in-udp", "udp", "any", Lit(0, b"\x00\x00\x08\x00"), ByteIn(4, _r(0x45, 0x4F)),
             LenField(6, 2, add=4, op="eq"), weight=2),),
        Carriers(names=("gre-in-udp", "gre-udp-dtls")),
        zeek=None, wireshark=("gre",), ndpi=("GRE",),
        how="GRE header without options carrying IPv4 whose total length fits the payload",
    ),
    Protocol(
        "vxlan", "VXLAN",
        (sig("vxlan", "udp", "any", Lit(0, b"\x08\x00\x00\x00"), Lit(7, b"\x00"),
             OneOf(20, (b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00")),
             min_len=36, weight=3),),  # fmt: skip
        Carriers(names=("vxlan", "vxlan-gpe")),
        zeek="vxlan", wireshark=("vxlan",), ndpi=("VXLAN",),
        how="VXLAN flags and an inner Ethernet frame with a known EtherType",
    ),
    Protocol(
        "teredo", "Teredo",
        (
            sig("teredo", "udp", "any", ByteIn(0, _r(0x60, 0x6F)), LenField(4, 2, add=40, op="eq"),
                ByteIn(6, frozenset({0, 6, 17, 58, 59})), min_len=40, weight=3),
            sig("teredo-origin", "udp", "any", Lit(0, b"\x00\x00"), ByteIn(8, _r(0x60, 0x6F)),
                LenField(12, 2, add=48, op="eq"), min_len=48, weight=3),
        ),
        Carriers(names=("teredo",)),
        zeek="teredo", wireshark=("teredo", "ipv6"), ndpi=("Teredo",),
        how="an IPv6 header whose payload length fits the datagram (optionally after an origin indication)",
    ),
    Protocol(
        "stun", "STUN/TURN",
        _stun(),
        Carriers(names=("stun", "turn", "stuns", "turns", "stun-behavior", "stun-behaviors", "stun-p1", "stun-p2",
                        "stun-p3", "stun-port"), name_re=r"^stuns?|^turns?"),  # fmt: skip
        zeek=None, wireshark=("stun", "classicstun", "turn"), ndpi=("STUN",),
        how="message type, length = payload - 20, magic cookie 2112a442 (classic STUN weakly)",
    ),
    Protocol(
        "sip", "SIP",
        (
            sig("sip-request", "any", "client", OneOf(0, _SIP_METHODS), weight=3),
            sig("sip-response", "any", "server", Lit(0, b"SIP/2.0 "), ByteIn(8, _r(0x31, 0x36)), weight=3),
        ),
        Carriers(names=("sip", "sip-tls")),
        zeek="sip", wireshark=("sip", "sip/sdp"), ndpi=("SIP",),
        how="request line with a sip:/sips: URI, SIP/2.0 status line",
    ),
    Protocol(
        "rtcp", "RTCP",
        (sig("rtcp", "udp", "any", ByteIn(0, _r(0x80, 0x9F)), ByteIn(1, frozenset({200, 201})),
             LenField(2, 2, add=4, scale=4, op="le", lo=1), min_len=8),),  # fmt: skip
        Carriers(names=("rtcp",)),
        zeek=None, wireshark=("rtcp",), ndpi=("RTCP",),
        how="version 2 sender/receiver report with a length in words that fits",
    ),
    Protocol(
        "rtsp", "RTSP",
        (
            sig("rtsp-request", "tcp", "client",
                OneOf(0, tuple(m + b" rtsp://" for m in (b"OPTIONS", b"DESCRIBE", b"SETUP", b"PLAY", b"PAUSE",
                                                         b"ANNOUNCE", b"RECORD", b"TEARDOWN", b"GET_PARAMETER",
                                                         b"SET_PARAMETER"))), weight=3),  # fmt: skip
            sig("rtsp-response", "tcp", "server", Lit(0, b"RTSP/1.0 "), ByteIn(9, _r(0x31, 0x35)), weight=3),
        ),
        Carriers(names=("rtsp", "rtsps", "rtsp-alt")),
        zeek=None, wireshark=("rtsp",), ndpi=("RTSP",),
        how="request line with an rtsp:// URI, RTSP/1.0 status line",
    ),
    Protocol(
        "mgcp", "MGCP",
        (sig("mgcp-command", "udp", "any",
             OneOf(0, tuple(v + b" " for v in (b"AUEP", b"AUCX", b"CRCX", b"DLCX", b"EPCF", b"MDCX", b"NTFY", b"RQNT",
                                               b"RSIP")), nocase=True),
             ByteIn(5, _DIGITS), check="keyword", keywords=(b"mgcp 1.0",), window=128, weight=3),),  # fmt: skip
        Carriers(names=("mgcp-gateway", "mgcp-callagent")),
        zeek=None, wireshark=("mgcp",), ndpi=("MGCP",),
        how="a command verb, transaction id and MGCP 1.0",
    ),
)

_DATA_STORES: tuple[Protocol, ...] = (
    Protocol(
        "mysql", "MySQL",
        (sig("mysql-greeting", "tcp", "server", LenField(0, 3, add=4, op="eq", lo=20, hi=1024, little=True),
             Lit(3, b"\x00\x0a"), ByteIn(5, _r(0x31, 0x39)), weight=3),),
        Carriers(names=("mysql", "mysqlx")),
        zeek="mysql", wireshark=("mysql",), ndpi=("MySQL",),
        how="server greeting: packet length = payload, sequence 0, protocol 10, a version string",
        extracts="",
    ),
    Protocol(
        "postgresql", "PostgreSQL",
        (
            sig("postgresql-startup", "tcp", "client", Lit(0, b"\x00\x00"), LenField(0, 4, op="eq", lo=9, hi=10000),
                Lit(4, b"\x00\x03\x00\x00"), weight=3),
            sig("postgresql-ssl-request", "tcp", "client", Lit(0, b"\x00\x00\x00"),
                OneOf(3, (b"\x08\x04\xd2\x16\x2f", b"\x08\x04\xd2\x16\x30")), lengths=(8,), weight=3),
            sig("postgresql-auth", "tcp", "server", Lit(0, b"R\x00\x00\x00"), LenField(1, 4, add=1, op="le", lo=8, hi=1024),
                Lit(5, b"\x00\x00\x00"), ByteIn(8, _r(0, 12))),
        ),
        Carriers(names=("postgresql",)),
        zeek="postgresql", wireshark=("pgsql",), ndpi=("PostgreSQL",),
        how="StartupMessage (protocol 3.0), SSLRequest/GSSENCRequest, authentication request",
    ),
    Protocol(
        "tds", "TDS (MS SQL)",
        (
            sig("tds-prelogin", "tcp", "any", ByteIn(0, frozenset({0x12, 0x04})), ByteIn(1, _r(0, 1)),
                LenField(2, 2, op="ge", lo=9, hi=32768), Lit(7, b"\x00"), Lit(8, b"\x00\x00"), weight=3),
            sig("tds-login7", "tcp", "client", Lit(0, b"\x10"), ByteIn(1, _r(0, 1)), LenField(2, 2, op="ge", lo=94),
                Lit(7, b"\x00"), ByteIn(15, frozenset({0x70, 0x71, 0x72, 0x73, 0x74}))),
            sig("tds-packet", "tcp", "any", ByteIn(0, frozenset({1, 3, 4, 7, 0x0E})), ByteIn(1, _r(0, 1)),
                LenField(2, 2, op="eq", lo=9), Lit(7, b"\x00"), priority=60),
        ),
        Carriers(names=("ms-sql-s", "ms-sql-m")),
        zeek=None, wireshark=("tds",), ndpi=("MsSQL-TDS",),
        how="TDS header (PRELOGIN with a VERSION option, LOGIN7 with a TDS version; other packets by exact length)",
    ),
    Protocol(
        "tns", "Oracle TNS",
        (
            sig("tns-connect", "tcp", "client", LenField(0, 2, op="ge", lo=34), Lit(2, b"\x00\x00\x01\x00\x00\x00\x01"),
                ByteIn(9, _r(0x2C, 0x40)), weight=3),
            sig("tns-accept", "tcp", "server", LenField(0, 2, op="ge", lo=24), Lit(2, b"\x00\x00\x02\x00\x00\x00\x01"),
                ByteIn(9, _r(0x2C, 0x40))),
        ),
        Carriers(names=("ncube-lm", "oracle", "sqlnet", "orasrv"), desc_re=r"\bOracle\b"),
        zeek=None, wireshark=("tns",), ndpi=("Oracle",),
        how="TNS header of a CONNECT/ACCEPT packet and a protocol version 300-319",
    ),
    Protocol(
        "mongodb", "MongoDB",
        (
            sig("mongodb-request", "tcp", "client", LenField(0, 4, op="ge", lo=21, hi=48 << 20, little=True),
                Lit(8, b"\x00\x00\x00\x00"), OneOf(12, (b"\xdd\x07\x00\x00", b"\xd4\x07\x00\x00", b"\xdc\x07\x00\x00")),
                weight=3),
            sig("mongodb-reply", "tcp", "server", LenField(0, 4, op="ge", lo=21, hi=48 << 20, little=True),
                OneOf(12, (b"\xdd\x07\x00\x00", b"\x01\x00\x00\x00", b"\xdc\x07\x00\x00")),
                Echo(8, 4, "mongodb-request", 4), weight=3),
        ),
        Carriers(names=("mongodb",)),
        zeek=None, wireshark=("mongo",), ndpi=("MongoDB",),
        how="message header: length, responseTo 0 and opcode OP_MSG/OP_QUERY; a reply echoing the request id",
    ),
    Protocol(
        "redis", "Redis",
        (
            sig("redis-command", "tcp", "client", Lit(0, b"*"), ByteIn(1, _r(0x31, 0x39)),
                OneOf(2, (b"\r\n$", b"0\r\n$", b"1\r\n$", b"2\r\n$", b"3\r\n$", b"4\r\n$", b"5\r\n$", b"6\r\n$",
                          b"7\r\n$", b"8\r\n$", b"9\r\n$")), weight=3),  # fmt: skip
            sig("redis-reply", "tcp", "server",
                OneOf(0, (b"+PONG\r\n", b"-NOAUTH ", b"-ERR unknown command", b"-WRONGPASS ", b"$-1\r\n",
                          b"-DENIED ", b"+OK\r\n")),  # fmt: skip
                weight=1, confirm_only=True),
        ),
        Carriers(names=("redis",)),
        zeek="redis", wireshark=("resp",), ndpi=("Redis", "RESP"),
        how="RESP array of bulk strings (a command); typical replies weakly",
    ),
    Protocol(
        "memcached", "Memcached",
        (
            sig("memcached-binary", "any", "any", ByteIn(0, frozenset({0x80, 0x81})), ByteIn(1, _r(0, 0x48)),
                Lit(5, b"\x00"), LenField(8, 4, add=24, op="ge", hi=1 << 20), min_len=24, weight=3),
            sig("memcached-udp", "udp", "any", Lit(2, b"\x00\x00\x00\x01\x00\x00"),
                OneOf(8, (b"get ", b"gets ", b"set ", b"stats", b"version", b"VALUE ", b"END\r\n", b"STAT ")),
                weight=3),
            sig("memcached-text", "tcp", "client", OneOf(0, (b"stats\r\n", b"version\r\n", b"gets ", b"stats ")),
                weight=1, confirm_only=True),
        ),
        Carriers(names=("memcache", "memcached")),
        zeek=None, wireshark=("memcache",), ndpi=("Memcached",),
        how="binary header (magic, opcode, body length), UDP frame header + text command; text commands weakly",
    ),
    Protocol(
        "cassandra", "Cassandra CQL",
        (sig("cql", "tcp", "any", ByteIn(0, frozenset({3, 4, 5, 0x83, 0x84, 0x85})), ByteIn(1, _r(0, 0x1F)),
             ByteIn(4, frozenset({0, 1, 2, 3, 5, 6})), LenField(5, 4, add=9, op="eq", hi=1 << 28), min_len=9,
             weight=2, priority=70),),  # fmt: skip
        Carriers(names=()),
        zeek=None, wireshark=("cql",), ndpi=("Cassandra",),
        how="native protocol v3-v5 frame: version, flags, opcode, length",
    ),
    Protocol(
        "kafka", "Kafka",
        (
            sig("kafka-request", "tcp", "client", LenField(0, 4, add=4, op="ge", lo=10, hi=1 << 27), Lit(4, b"\x00"),
                ByteIn(5, _r(0, 74)), Lit(6, b"\x00"), ByteIn(7, _r(0, 17)), Lit(12, b"\x00"), ByteIn(13, _r(1, 80)),
                ByteIn(14, _PRINT), weight=3, priority=60),
            sig("kafka-response", "tcp", "server", LenField(0, 4, add=4, op="ge", lo=4, hi=1 << 27),
                Echo(4, 4, "kafka-request", 8), weight=3, priority=60),
        ),
        Carriers(names=("kafka",)),
        zeek=None, wireshark=("kafka",), ndpi=("Kafka",),
        how="size, API key and version, client id; a response echoing the correlation id",
    ),
    Protocol(
        "amqp", "AMQP",
        (
            sig("amqp-header", "tcp", "client", Lit(0, b"AMQP"), ByteIn(4, _r(0, 3)), lengths=(8,), weight=3),
            sig("amqp-connection-start", "tcp", "server", Lit(0, b"\x01\x00\x00"), LenField(3, 4, add=8, op="ge"),
                Lit(7, b"\x00\x0a\x00\x0a"), weight=3),
        ),
        Carriers(names=("amqp", "amqps")),
        zeek=None, wireshark=("amqp",), ndpi=("AMQP",),
        how="protocol header AMQP + version, Connection.Start frame",
    ),
    Protocol(
        "nats", "NATS",
        (
            sig("nats-info", "tcp", "server", Lit(0, b"INFO {\""), weight=3, priority=10),
            sig("nats-connect", "tcp", "client", Lit(0, b"CONNECT {\""), weight=3, priority=10),
        ),
        Carriers(names=("nats",)),
        zeek=None, wireshark=(), ndpi=("Nats",),
        how="INFO {...} greeting, CONNECT {...}",
    ),
    Protocol(
        "fix", "FIX",
        (sig("fix", "tcp", "any", Lit(0, b"8=FIX"), weight=3),),
        Carriers(desc_re=r"\bFIX\b"),
        zeek=None, wireshark=("fix",), ndpi=("FIX",),
        how="BeginString 8=FIX",
    ),
    Protocol(
        "smpp", "SMPP",
        (sig("smpp-bind", "tcp", "any", LenField(0, 4, op="eq", lo=16, hi=1024), OneOf(4, (b"\x00\x00\x00", b"\x80\x00\x00")),
             ByteIn(7, frozenset({1, 2, 9})), weight=2, priority=40),),  # fmt: skip
        Carriers(names=("smpp",)),
        zeek=None, wireshark=("smpp",), ndpi=("SMPP",),
        how="PDU length = payload and a bind command id",
    ),
)

_PEER_AND_APPS: tuple[Protocol, ...] = (
    Protocol(
        "bittorrent", "BitTorrent",
        (
            sig("bittorrent-handshake", "tcp", "any", Lit(0, b"\x13BitTorrent protocol"), weight=3),
            sig("bittorrent-dht", "udp", "any", OneOf(0, (b"d1:ad2:id20:", b"d1:rd2:id20:", b"d2:ip6:", b"d1:eli"))),
            sig("utp-syn", "udp", "client", Lit(0, b"\x41"), ByteIn(1, frozenset({0, 2})), lengths=(20, 26, 28, 32),
                weight=1, confirm_only=True),
            sig("utp-state", "udp", "server", Lit(0, b"\x21"), ByteIn(1, frozenset({0, 1, 2})),
                Echo(2, 2, "utp-syn", 2), weight=3),
        ),
        Carriers(),  # no registered port
        zeek="bittorrent", wireshark=("bittorrent", "bt-dht", "bt-utp"), ndpi=("BitTorrent",),
        how="peer handshake, bencoded DHT query, uTP SYN answered by a STATE for its connection id",
    ),
    Protocol(
        "gnutella", "Gnutella",
        (sig("gnutella", "tcp", "any", OneOf(0, (b"GNUTELLA CONNECT/", b"GNUTELLA/0.6 ")), weight=3),),
        Carriers(names=("gnutella-svc", "gnutella-rtr")),
        zeek=None, wireshark=("gnutella",), ndpi=("Gnutella",),
        how="GNUTELLA CONNECT handshake",
    ),
    Protocol(
        "xmpp", "XMPP",
        (
            sig("xmpp-stream", "tcp", "any", OneOf(0, (b"<?xml ", b"<stream:stream")), check="keyword",
                keywords=(b"stream:stream",), window=200, weight=3),
        ),
        Carriers(names=("xmpp-client", "xmpp-server", "jabber-client", "jabber-server")),
        zeek="xmpp", wireshark=("xmpp", "jabber"), ndpi=("Jabber",),
        how="an XML stream header (<stream:stream)",
    ),
    Protocol(
        "oicq", "OICQ (QQ)",
        (sig("oicq", "udp", "any", Lit(0, b"\x02"), ByteIn(1, _r(0x01, 0x3F)), Lit(3, b"\x00"), Tail(1, b"\x03"),
             min_len=12),),
        Carriers(names=("oicq",)),
        zeek=None, wireshark=("oicq",), ndpi=("OICQ",),
        how="start byte 02, version, command, end byte 03",
    ),
    Protocol(
        "raknet", "RakNet",
        (
            sig("raknet-open", "udp", "any", ByteIn(0, frozenset({5, 6, 7, 8})), Lit(1, _RAKNET_MAGIC), weight=3),
            sig("raknet-ping", "udp", "any", ByteIn(0, frozenset({1, 2})), Lit(9, _RAKNET_MAGIC), weight=3),
            sig("raknet-pong", "udp", "server", Lit(0, b"\x1c"), Lit(17, _RAKNET_MAGIC), weight=3),
        ),
        Carriers(),
        zeek=None, wireshark=("raknet",), ndpi=("RakNet",),
        how="offline message id and the 16-byte offline magic",
    ),
    Protocol(
        "dropbox", "Dropbox LAN sync",
        (sig("dropbox-lansync", "udp", "any", Lit(0, b'{"host_int": '), weight=3),),
        Carriers(names=("db-lsp", "db-lsp-disc")),
        zeek=None, wireshark=("db-lsp-disc",), ndpi=("Dropbox",),
        how="JSON discovery broadcast starting {\"host_int\": ",
    ),
    Protocol(
        "spotify", "Spotify",
        (sig("spotify-discovery", "udp", "any", Lit(0, b"SpotUdp0"), weight=3),),
        Carriers(),
        zeek=None, wireshark=(), ndpi=("Spotify",),
        how="LAN discovery magic SpotUdp0",
    ),
    Protocol(
        "syncthing", "Syncthing",
        (sig("syncthing-discovery", "udp", "any", Lit(0, b"\x2e\xa7\xd9\x0b"), weight=3),),
        Carriers(names=("syncthing",)),
        zeek=None, wireshark=(), ndpi=("Syncthing",),
        how="local discovery magic 2ea7d90b",
    ),
    Protocol(
        "roughtime", "Roughtime",
        (sig("roughtime", "any", "any", Lit(0, b"ROUGHTIM"), weight=3),),
        Carriers(names=("roughtime",)),
        zeek=None, wireshark=("roughtime",), ndpi=("Roughtime",),
        how="packet magic ROUGHTIM",
    ),
)

PROTOCOLS: tuple[Protocol, ...] = (
    _WEB_AND_MAIL + _REMOTE_ACCESS + _IOT_AND_INDUSTRIAL + _NETWORK + _TUNNELS_AND_MEDIA + _DATA_STORES + _PEER_AND_APPS
)
"""The protocol table; a protocol's code is its 1-based position (0: none)."""

NOT_RECOGNISED: tuple[tuple[str, str], ...] = (
    ("mDNS, LLMNR", "DNS messages: reported as dns; the port or multicast address tells them apart, not the bytes"),
    ("RTP, SRTP", "a 12-byte header with a version and payload type, no magic: needs the SIP/SDP or RTSP setup "
                  "or several packets"),
    ("Tor", "TLS with randomised names: its TLS is reported as tls"),
    ("ESP, IPsec NAT-T data", "an SPI and encrypted bytes; IKE (its key exchange) is recognised"),
    ("SMB's NTLM", "NTLMSSP comes after the SMB negotiation, past the first recognised packet"),
    ("Ethereum devp2p", "RLPx is encrypted from the first byte; discovery packets are hash + signature"),
    ("DHCPv6, PCP, LLDP-like beacons", "a message type byte and a transaction id: too short to tell"),
    ("MySQL client, MSSQL after PRELOGIN, encrypted RDP", "only the first message of each side has a fixed shape"),
    ("TURN ChannelData, WebRTC data", "a channel number and length: too short to tell"),
)
"""Protocols portclass deliberately does not name from payload bytes, and why."""


def _signatures() -> tuple[Signature, ...]:
    """Every record's signatures, each stamped with its protocol, in evaluation order (priority, then table)."""
    rows = [replace(s, protocol=p.name) for p in PROTOCOLS for s in p.signatures]
    order = sorted(range(len(rows)), key=lambda i: (rows[i].priority, i))
    return tuple(rows[i] for i in order)


SIGNATURES: tuple[Signature, ...] = _signatures()
"""The signature table in evaluation order; code = 1-based position."""

BY_NAME: dict[str, Protocol] = {p.name: p for p in PROTOCOLS}
"""Protocol name -> record."""


CARRIERS: dict[str, Carriers] = {p.name: p.carriers for p in PROTOCOLS}
"""Protocol name -> the registry names that carry it (a protocol that rides in another is also carried where
that one is: ``verdict``)."""

ZEEK_SERVICE: dict[str, str] = {p.name: p.zeek or p.name for p in PROTOCOLS}
"""Protocol name -> conn.log ``service`` (Zeek's analyzer name where Zeek has one, else portclass's name)."""

WIRESHARK_ALIASES: dict[str, str] = {}
"""tshark protocol (normalised) -> portclass protocol (a name shared by several: the first record's)."""
for _p in PROTOCOLS:
    for _w in _p.wireshark:
        WIRESHARK_ALIASES.setdefault(_w, _p.over or _p.name)
