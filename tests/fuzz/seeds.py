"""Seed corpora for the fuzz targets, made from the project's own files (nothing from ../shared).

* capture, reports: ``captures/sample.pcap``, ``sample.pcapng``, ``sample-sll.pcap`` (written by
  ``captures/make_captures.py``) whole and cut to their first packets, plain and gzip (first byte);
* registry: one small registry (the services the sample captures use, a reserved port, an
  unassigned range with known unauthorized use) rendered as IANA XML, CSV, pipe table, plain text
  and services(5);
* update: HTTP responses serving the XML rendering (Content-Length, chunked, gzip-free), an error
  status and a redirect.

``python -m tests.fuzz.seeds DIR`` writes them as ``DIR/<target>/<name>``.
"""

from __future__ import annotations

import argparse
import struct
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ("sample.pcap", "sample.pcapng", "sample-sll.pcap")
NOTICE = (
    "ASSIGNMENT OF A PORT NUMBER DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT OF AN APPLICATION OR PRODUCT, "
    'AND THE FACT THAT NETWORK TRAFFIC IS FLOWING TO OR FROM A REGISTERED PORT DOES NOT MEAN THAT IT IS "GOOD" '
    "TRAFFIC, NOR THAT IT NECESSARILY CORRESPONDS TO THE ASSIGNED SERVICE. FIREWALL AND SYSTEM ADMINISTRATORS "
    "SHOULD CHOOSE HOW TO CONFIGURE THEIR SYSTEMS BASED ON THEIR KNOWLEDGE OF THE TRAFFIC IN QUESTION, NOT "
    "WHETHER THERE IS A PORT NUMBER REGISTERED OR NOT."
)
# name, port(s), transport, description, unauthorized, notes, registered, modified
RECORDS: list[tuple[str, str, str, str, str, str, str, str]] = [
    ("", "0", "tcp", "Reserved", "", "", "", ""),
    ("ftp", "21", "tcp", "File Transfer Protocol [Control]", "", "", "", ""),
    ("ssh", "22", "tcp", "The Secure Shell (SSH) Protocol", "", "", "", ""),
    ("domain", "53", "udp", "Domain Name Server", "", "", "", ""),
    ("domain", "53", "tcp", "Domain Name Server", "", "", "", ""),
    ("http", "80", "tcp", "World Wide Web HTTP", "", "", "", ""),
    ("www", "80", "tcp", "World Wide Web HTTP", "", "This entry is an alias to \"http\".", "", ""),
    ("https", "443", "tcp", "http protocol over TLS/SSL", "", "", "", "2017-02-14"),
    ("", "1024", "udp", "Reserved", "", "", "", ""),
    ("mysql", "3306", "tcp", "MySQL", "", "", "", ""),
    ("", "41797-42507", "tcp", "Unassigned", "known unauthorized use on port 42000", "", "", ""),
    ("", "49152-65535", "udp", "Unassigned", "", "", "", ""),
    ("sctp-test", "9899", "sctp", "SCTP test", "", "", "2005-11", ""),
    ("leaf-1", "", "", "Leaf-1 Protocol", "", "", "", ""),
]


def _xml() -> bytes:
    def rec(name: str, port: str, tr: str, desc: str, unauth: str, note: str, reg: str, mod: str) -> str:
        attrs = (f' date="{reg}"' if reg else "") + (f' updated="{mod}"' if mod else "")
        parts = [f"<record{attrs}>"]
        if name:
            parts.append(f"<name>{name}</name>")
        if tr:
            parts.append(f"<protocol>{tr}</protocol>")
        if port:
            parts.append(f"<number>{port}</number>")
        parts.append(f"<description>{desc}</description>")
        parts.append('<xref type="person" data="Jon_Postel"/>')
        if unauth:
            parts.append(f"<unauthorized>{unauth}</unauthorized>")
        if note:
            parts.append(f"<note>{note.replace(chr(34), '&quot;')}</note>")
        parts.append("</record>")
        return "".join(parts)

    body = "\n".join(rec(*r) for r in RECORDS)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<registry xmlns="http://www.iana.org/assignments" id="service-names-port-numbers">\n'
        "<title>Service Name and Transport Protocol Port Number Registry</title>\n"
        "<updated>2026-08-17</updated>\n"
        f"<note>{NOTICE}</note>\n{body}\n</registry>\n"
    ).encode()


def _csv() -> bytes:
    head = (
        "Service Name,Port Number,Transport Protocol,Description,Assignee,Contact,Registration Date,"
        "Modification Date,Reference,Service Code,Unauthorized Use Reported,Assignment Notes\n"
    )
    rows = [
        f'{n},{p},{t},"{d}",[Jon_Postel],[Jon_Postel],{r},{m},[RFC6335],,{u},"{note.replace(chr(34), chr(34) * 2)}"\n'
        for n, p, t, d, u, note, r, m in RECORDS
    ]
    return (head + "".join(rows)).encode()


def _pipe_table() -> bytes:
    head = (
        "Service Name and Transport Protocol Port Number Registry\n\nLast Updated\n2026-08-17\n\n"
        f"{NOTICE}\n\n"
        "| Service Name | Port Number | Transport Protocol | Description | Assignee | Contact | Registration Date "
        "| Modification Date | Reference | Service Code | Unauthorized Use Reported | Assignment Notes |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {n} | {p} | {t} | {d} | [Jon_Postel] | [Jon_Postel] | {r} | {m} | [RFC6335] | | {u} | {note} |\n"
        for n, p, t, d, u, note, r, m in RECORDS
    ]
    return (head + "".join(rows)).encode()


def _plain_text() -> bytes:
    head = (
        "Service Name and Transport Protocol Port Number Registry\n\nLast Updated 2026-08-17\n\n"
        "Service Name Port Number Transport Protocol Description Assignee Contact Registration Date "
        "Modification Date Reference Service Code Unauthorized Use Reported Assignment Notes\n"
    )
    rows = [
        " ".join(x for x in (n, p, t, d, "[Jon_Postel] [Jon_Postel]", r, m, "[RFC6335]", u, note) if x) + "\n"
        for n, p, t, d, u, note, r, m in RECORDS
    ]
    return (head + "".join(rows) + "\nContact Information\n\nID Name Contact URI\n[Jon_Postel] Jon Postel\n").encode()


def _services() -> bytes:
    lines = ["# services(5) excerpt written by tests/fuzz/seeds.py\n"]
    lines += [f"{n:<15} {p}/{t:<8} # {d}\n" for n, p, t, d, *_ in RECORDS if n and p and t]
    lines.append("http-alt        8080/tcp webcache       # WWW caching service\n")
    return "".join(lines).encode()


@cache
def registry_renderings() -> dict[str, bytes]:
    """The seed registry in every rendering portclass reads."""
    return {
        "xml": _xml(),
        "csv": _csv(),
        "pipe.txt": _pipe_table(),
        "plain.txt": _plain_text(),
        "services": _services(),
    }


def _pcap_prefix(data: bytes, packets: int) -> bytes:
    """The file header and first ``packets`` records of a classic pcap."""
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    for _ in range(packets):
        (incl,) = struct.unpack_from(order + "I", data, pos + 8)
        pos += 16 + incl
    return data[:pos]


def _pcapng_prefix(data: bytes, packets: int) -> bytes:
    """The blocks of a pcapng up to its ``packets``-th enhanced/simple packet block."""
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    pos, seen = 0, 0
    while pos + 8 <= len(data) and seen < packets:
        btype, blen = struct.unpack_from(order + "II", data, pos)
        pos += blen
        seen += btype in (3, 6)
    return data[:pos]


def _pcapng_blocks(data: bytes) -> list[bytes]:
    """The blocks of a little-endian pcapng, in order."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        (blen,) = struct.unpack_from("<I", data, pos + 4)
        out.append(data[pos : pos + blen])
        pos += blen
    return out


def _idb(linktype: int, options: bytes) -> bytes:
    body = struct.pack("<HHI", linktype, 0, 0) + options + struct.pack("<HH", 0, 0)
    return struct.pack("<II", 1, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _option(code: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return struct.pack("<HH", code, len(value)) + value + bytes(pad)


def pcapng_variants(data: bytes, packets: int = 8) -> dict[str, bytes]:
    """The first packets of ``sample.pcapng`` with timestamp options on its interface (if_tsresol 10^-9,
    if_tsoffset), and with a second interface described after the packets that use it."""
    blocks = _pcapng_blocks(_pcapng_prefix(data, packets))
    shb, idb, rest = blocks[0], blocks[1], blocks[2:]
    (linktype,) = struct.unpack_from("<H", idb, 8)
    opts = _option(9, b"\x09") + _option(14, struct.pack("<q", 1_700_000_000))
    epb1 = [b[:8] + struct.pack("<I", 1) + b[12:] if struct.unpack_from("<I", b)[0] == 6 else b for b in rest]
    return {
        "tsoffset.pcapng": shb + _idb(linktype, opts) + b"".join(rest),
        "late-idb.pcapng": shb + idb + b"".join(epb1[:2]) + _idb(linktype, _option(9, b"\x06")) + b"".join(epb1[2:]),
    }


def capture_seeds() -> dict[str, bytes]:
    """Capture inputs: mode byte (bit 0: gzip) + file bytes."""
    out: dict[str, bytes] = {}
    for name in CAPTURES:
        data = (ROOT / "captures" / name).read_bytes()
        cut = _pcapng_prefix if name.endswith(".pcapng") else _pcap_prefix
        for k in (2, 8, 24):
            out[f"{name}-{k}"] = b"\0" + cut(data, k)
        out[name] = b"\0" + data
        out[f"{name}.gz"] = b"\1" + data
        if name.endswith(".pcapng"):
            out.update({k: b"\0" + v for k, v in pcapng_variants(data).items()})
    return out


def _http(status: str, headers: list[str], body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


def update_seeds() -> dict[str, bytes]:
    """Raw HTTP responses a registry server might send."""
    xml = registry_renderings()["xml"]
    half = len(xml) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, xml[:half], len(xml) - half, xml[half:])
    return {
        "ok-length": _http("200 OK", ["Content-Type: application/xml", f"Content-Length: {len(xml)}"], xml),
        "ok-close": _http("200 OK", ["Content-Type: application/xml", "Connection: close"], xml),
        "ok-chunked": _http("200 OK", ["Transfer-Encoding: chunked"], chunked),
        "ok-csv": _http("200 OK", ["Content-Type: text/csv"], registry_renderings()["csv"]),
        "not-found": _http("404 Not Found", ["Content-Length: 9"], b"not found"),
        "redirect": _http("301 Moved Permanently", ["Location: /other.xml", "Content-Length: 0"], b""),
        "html": _http("200 OK", ["Content-Type: text/html"], b"<!DOCTYPE html><html><body>maintenance</body></html>"),
    }


SEEDS = {
    "capture": capture_seeds,
    "reports": capture_seeds,
    "registry": registry_renderings,
    "registry_compile": registry_renderings,
    "update": update_seeds,
}
"""Target name -> its seed corpus (name -> bytes)."""


def write_seeds(target: str, out: Path) -> Path:
    """Write ``target``'s seeds into ``out`` (created) and return it."""
    out.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS[target]().items():
        (out / name).write_bytes(data)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    args = p.parse_args()
    for target in SEEDS:
        write_seeds(target, args.out / target)


if __name__ == "__main__":
    main()
