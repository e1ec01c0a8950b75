"""The HTML report, checked in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium).

The analysis is built from synthetic packet batches (``make_batch`` -> ``FlowAggregator`` ->
``label_flows`` -> ``verdicts``) with a realistic mix: web (TLS with server names, HTTP), DNS, SSH,
a flow to 42000 (unauthorized use known, unassigned), a reserved port, peer-to-peer UDP in the
dynamic range, IPv6, and two service mismatches (SSH on 443/tcp, HTTP on 3306/tcp). The payload
evidence is given as the evidence stage's per-packet tags (signature, TLS server name).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from classifier import pipeline
from classifier.capture.columns import PROTO_TCP, PROTO_UDP
from classifier.evidence import SIG_NAMES
from classifier.evidence.verdict import VERDICTS, protocol_names, verdicts
from classifier.flows import SERVER_NAME_BYTES, FlowAggregator, PacketTags, make_batch
from classifier.registry.compile import compile_records
from classifier.registry.model import Provenance, Record
from classifier.report import html as html_report
from tests.conftest import ROOT, run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "tests" / "artifacts"
NOTICE_START = "ASSIGNMENT OF A PORT NUMBER DOES NOT IN ANY WAY IMPLY AN ENDORSEMENT"
T0 = 1_786_957_200 * 10**9  # 2026-08-17 09:00:00 UTC
SYN, SYNACK, ACK, PSHACK, FINACK = 0x02, 0x12, 0x10, 0x18, 0x11


# --------------------------------------------------------------------------- synthetic traffic


def _tcp(
    ts: int,
    c: str,
    cp: int,
    s: str,
    sp: int,
    n_data: int,
    size: int,
    gap_ns: int = 20_000_000,
    *,
    c_sig: str | None = None,
    s_sig: str | None = None,
    sni: str | None = None,
) -> list[tuple]:
    """Packets of one TCP connection: handshake, ``n_data`` request/response packets, FIN exchange.

    Each packet is (ts, src, dst, sport, dport, tcp flags, wire length, proto, payload length,
    signature name or None, TLS server name or None): the first client data packet carries ``c_sig``
    (and ``sni``), the first server data packet ``s_sig``.
    """
    pk = [
        (ts, c, s, cp, sp, SYN, 74, 0, None, None),
        (ts + gap_ns, s, c, sp, cp, SYNACK, 74, 0, None, None),
        (ts + 2 * gap_ns, c, s, cp, sp, ACK, 66, 0, None, None),
    ]
    t = ts + 3 * gap_ns
    for i in range(n_data):
        if i % 3 == 0:
            first = i == 0
            pk.append((t, c, s, cp, sp, PSHACK, 66 + min(size, 600), min(size, 600),
                       c_sig if first else None, sni if first else None))  # fmt: skip
        else:
            pk.append((t, s, c, sp, cp, PSHACK, 66 + size, size, s_sig if i == 1 else None, None))
        t += gap_ns
    pk += [
        (t, c, s, cp, sp, FINACK, 66, 0, None, None),
        (t + gap_ns, s, c, sp, cp, FINACK, 66, 0, None, None),
        (t + 2 * gap_ns, c, s, cp, sp, ACK, 66, 0, None, None),
    ]
    return [p[:7] + (PROTO_TCP,) + p[7:] for p in pk]


def _udp(
    ts: int, c: str, cp: int, s: str, sp: int, n: int, size: int, gap_ns: int = 5_000_000, *, sig: str | None = None
) -> list[tuple]:
    """Packets of one UDP exchange alternating client -> server and back (the first one carries ``sig``)."""
    pk = []
    for i in range(n):
        src, dst, a, b = (c, s, cp, sp) if i % 2 == 0 else (s, c, sp, cp)
        wire = size + (i % 5) * 7
        pk.append((ts + i * gap_ns, src, dst, a, b, 0, wire, PROTO_UDP, wire - 42, sig if i == 0 else None, None))
    return pk


def traffic(seed: int = 7) -> list[tuple]:
    """Packets (ts, src, dst, sport, dport, flags, wire_len, proto) of a ten-minute office capture."""
    rng = np.random.default_rng(seed)
    clients = [f"10.1.0.{i}" for i in range(11, 31)]
    web = ["93.184.216.34", "142.250.74.110", "151.101.1.69", "104.16.132.229"]
    names = dict(zip(web, ["www.example.com", "mail.example.org", "cdn.example.net", "api.example.com"], strict=True))
    pk: list[tuple] = []
    span = 600 * 10**9

    def cport() -> int:
        return int(rng.integers(50000, 61000))

    for _ in range(110):  # web
        ts = T0 + int(rng.integers(0, span))
        port = 443 if rng.random() < 0.75 else 80
        client, server = str(rng.choice(clients)), str(rng.choice(web))
        ev = {"c_sig": "tls-client-hello", "sni": names[server]} if port == 443 else {"c_sig": "http-request"}
        pk += _tcp(ts, client, cport(), server, port, int(rng.integers(3, 40)), int(rng.integers(200, 1400)), **ev)
    for _ in range(50):  # DNS to the resolver
        ts = T0 + int(rng.integers(0, span))
        pk += _udp(ts, str(rng.choice(clients)), cport(), "10.1.0.2", 53, 2, int(rng.integers(70, 180)), sig="dns")
    for k in range(5):  # SSH to a jump host, one long session
        ts = T0 + int(rng.integers(0, span // 2))
        pk += _tcp(ts, clients[k], cport(), "10.1.0.5", 22, 400 if k == 0 else 12, 900 if k == 0 else 120,
                   s_sig="ssh-banner")  # fmt: skip
    for k in range(2):  # unassigned port with known unauthorized use
        ts = T0 + 240 * 10**9 + k * 30 * 10**9
        pk += _tcp(ts, "10.1.0.23", 51000 + k, "203.0.113.66", 42000, 30, 1200)
    pk += _tcp(T0 + 300 * 10**9, "10.1.0.17", 52001, "198.51.100.23", 1023, 4, 300)  # reserved port
    for k in range(6):  # BitTorrent-like peer-to-peer UDP, both ports dynamic
        ts = T0 + 120 * 10**9 + k * 40 * 10**9
        pk += _udp(ts, "10.1.0.30", 51413, f"185.21.216.{140 + k}", 61000 + k, 20, 1100, sig="bittorrent-dht")
    for _ in range(8):  # IPv6 web and DNS
        ts = T0 + int(rng.integers(0, span))
        pk += _tcp(ts, "2001:db8:10::15", cport(), "2606:4700::6810:84e5", 443, 10, 800, c_sig="tls-client-hello",
                   sni="ipv6.example.com")  # fmt: skip
    pk += _udp(T0 + 5 * 10**9, "2001:db8:10::15", 53535, "2001:db8:10::53", 53, 2, 110, sig="dns")
    # service mismatches: an SSH server answering on 443/tcp, HTTP on the MySQL port
    pk += _tcp(
        T0 + 420 * 10**9, "10.1.0.19", 53443, "203.0.113.9", 443, 24, 700, c_sig="ssh-banner", s_sig="ssh-banner"
    )
    pk += _tcp(T0 + 450 * 10**9, "10.1.0.21", 53306, "198.51.100.33", 3306, 6, 400, c_sig="http-request",
               s_sig="http-response")  # fmt: skip
    pk.sort(key=lambda p: p[0])
    return pk


def build_analysis(registry, packets: list[tuple] | None = None, chunk: int = 500) -> pipeline.Analysis:
    """Analysis of ``packets`` fed through the real aggregator in chunks, labelled with ``registry``."""
    packets = traffic() if packets is None else packets
    agg = FlowAggregator(int(pipeline.DEFAULT_IDLE_TIMEOUT_S * 1e9))
    for i in range(0, len(packets), chunk):
        part = packets[i : i + chunk]
        ts, src, dst, sp, dp, fl, wl, pr, pl, sig, sni = (list(x) for x in zip(*part, strict=True))
        batch = make_batch(
            ts_ns=ts, src=src, dst=dst, sport=sp, dport=dp, tcp_flags=fl, wire_len=wl, proto=pr, payload_len=pl
        )
        named = [k for k, x in enumerate(sni) if x]
        tags = PacketTags(
            np.array([SIG_NAMES.index(x) if x else 0 for x in sig], dtype=np.uint8),
            np.array(named, dtype=np.int64),
            np.array([sni[k].encode() for k in named], dtype=f"S{SERVER_NAME_BYTES}"),
        )
        agg.add(batch, tags)
    agg.stats.bytes = sum(p[6] for p in packets) + 5_120  # plus the packets without ports below
    agg.stats.packets += 53
    agg.stats.files = ["office-0817.pcapng"]
    agg.stats.no_ports.update({"icmp": 37, "igmp": 4})
    agg.stats.non_ip = 12
    agg.stats.malformed = 1
    agg.stats.warnings.append("office-0817.pcapng: packet 9123: truncated IPv4 header (offset 1482210)")
    flows, labels = pipeline.label_flows(agg.result(), registry)
    verdicts(flows, labels, registry)
    return pipeline.Analysis(flows, labels, agg.stats, registry, inputs=["captures/office-0817.pcapng"])


# --------------------------------------------------------------------------- browser


def _browser_available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Debian's chromedriver: no downloads, no network, fresh profile."""
    if not _browser_available():
        if os.environ.get("CI"):
            raise RuntimeError("chromium/chromium-driver missing: apt-get install -y chromium chromium-driver")
        pytest.skip("chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download anything
    profile = tempfile.mkdtemp(prefix="portclass-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--window-size=1366,768",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    # the viewport itself is 1366x768, whatever the window decorations
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": False}
    )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> list[dict]:
    """Load ``path`` over file:// and return the browser log entries the load produced."""
    driver.get_log("browser")  # drop anything earlier
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")
    return driver.get_log("browser")


def _visible_rows(driver) -> list[dict[str, str]]:
    """The table's rendered rows as {column id: cell text}."""
    return driver.execute_script(
        """
        const cols = [...document.querySelectorAll('#pc-table thead th')].map(th => th.dataset.col);
        return [...document.querySelectorAll('#pc-table tbody tr')].map(tr =>
            Object.fromEntries([...tr.cells].map((td, i) => [cols[i], td.textContent])));
        """
    )


def _wait_matches(driver, n: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    # a wait, not a speed check (speed is benchmarks' business): generous for a loaded machine
    WebDriverWait(driver, 60).until(lambda d: d.find_element("id", "pc-count").get_attribute("data-matches") == str(n))


def _set_filter(driver, text: str, expected: int) -> None:
    box = driver.find_element("id", "pc-filter")
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() does not fire 'input'
        driver.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)
    _wait_matches(driver, expected)


def _int(cell: str) -> int:
    return int(cell.replace(",", ""))


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def analysis(reg):
    return build_analysis(reg)


@pytest.fixture(scope="module")
def report(analysis, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    html_report.write(analysis, "html", out)
    return out


def test_synthetic_mix_is_realistic(analysis):
    from classifier.label import flag_list

    fl, lab = analysis.flows, analysis.labels
    flags_by_port = {int(p): set(flag_list(int(f))) for p, f in zip(fl.server_port, lab.flags, strict=True)}
    assert {"unauthorized-use-known", "unassigned-port"} <= flags_by_port[42000]
    assert "reserved-port" in flags_by_port[1023]
    assert any(p >= 49152 and "dynamic-port" in f for p, f in flags_by_port.items())
    assert {22, 53, 80, 443} <= set(flags_by_port)
    assert flags_by_port[3306] == {"service-mismatch"}
    assert (fl.ip_version == 6).any()
    span_s = (int(fl.last_ts_ns.max()) - int(fl.first_ts_ns.min())) / 1e9
    assert span_s > 300
    # payload evidence: every verdict occurs; the two mismatches are the worst flows
    verdict = np.array(VERDICTS, dtype=object)[lab.verdict]
    proto = protocol_names(lab.protocol)
    assert {str(v) for v in verdict} == {"consistent", "mismatch", "unregistered", "unverified"}
    mism = np.flatnonzero(verdict == "mismatch")
    assert sorted(zip(fl.server_port[mism].tolist(), proto[mism].tolist(), strict=True)) == [
        (443, "ssh"),
        (3306, "http"),
    ]
    assert (lab.severity[mism] == 6).all() and lab.severity.max() == 6
    assert set(proto[fl.server_port == 22]) == {"ssh"} and set(verdict[fl.server_port == 22]) == {"consistent"}
    assert set(verdict[fl.server_port >= 61000]) == {"unregistered"}
    assert set(verdict[fl.server_port == 42000]) == {"unverified"}
    assert {bytes(x).decode() for x in fl.server_name[fl.server_port == 443]} >= {"www.example.com", ""}


def test_self_contained_and_reasonably_small(report, analysis):
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # no network: nothing refers to another resource
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", text, re.I)
    assert "Content-Security-Policy" in text and "default-src 'none'" in html.unescape(text)
    assert NOTICE_START in text
    assert text.index(NOTICE_START) < text.index('id="pc-totals"')
    assert report.stat().st_size < 400_000
    assert not list(report.parent.glob(".report.html.*"))  # atomic write left no temporary file


def test_html_to_stdout(analysis, capsys):
    html_report.write(analysis, "html", None)
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")


def test_row_cap_note(analysis, tmp_path):
    out = tmp_path / "capped.html"
    html_report.write(analysis, "html", str(out), max_rows=25)
    text = out.read_text(encoding="utf-8")
    assert 'id="pc-cap-note"' in text and f"25 worst-first flows of {len(analysis.flows):,}" in text
    payload = html_report.table_payload(analysis, max_rows=25)
    assert len(payload["rows"]) == 25 and payload["total"] == len(analysis.flows)
    assert [r[0] for r in payload["rows"]] == sorted((r[0] for r in payload["rows"]), reverse=True)


def test_partial_registry_interrupted_many_files(analysis):
    """A partial registry source, an interrupted read and several files are all said at the top."""
    import dataclasses

    from classifier.registry.sources import PARTIAL_NOTICE

    prov = dataclasses.replace(analysis.registry.provenance, full=False, notice=None)
    registry = dataclasses.replace(analysis.registry, provenance=prov)
    stats = dataclasses.replace(analysis.stats, files=[f"day-{i}.pcap" for i in range(5)])
    a = dataclasses.replace(analysis, registry=registry, stats=stats, interrupted=True, inputs=["captures/"])
    text = html.unescape(html_report.render(a))
    assert PARTIAL_NOTICE in text and "wording of the IANA registry" in text and NOTICE_START in text
    assert "Partial: interrupted by SIGINT; the report covers only the packets read before it." in text
    assert "5 capture files" in text and "day-4.pcap" in text


def test_empty_analysis_renders(reg):
    a = build_analysis(reg, packets=[])
    text = html_report.render(a)
    assert NOTICE_START in text and "No flows" in text


def test_payload_table_and_charts(analysis):
    """The embedded rows carry protocol, verdict, server name and note; the evidence charts count them."""
    payload = html_report.table_payload(analysis)
    fields = {name: i for i, name in enumerate(html_report.ROW_FIELDS)}
    rows = payload["rows"]
    assert len(rows) == len(analysis.flows) and all(len(r) == len(fields) for r in rows)
    first = rows[0]
    assert payload["verdicts"][first[fields["verdict"]]] == "mismatch" and first[fields["sev"]] == 6
    assert payload["protocols"][first[fields["protocol"]]] == ["ssh", "SSH"]
    assert payload["services"][first[fields["service"]]] == "https"
    assert payload["notes"][first[fields["note"]]] == "port 443/tcp registered for https; payload is SSH"
    second = rows[1]
    assert payload["notes"][second[fields["note"]]] == "port 3306/tcp registered for mysql; payload is HTTP"
    assert sorted(payload["server_names"]) == sorted(
        ["www.example.com", "mail.example.org", "cdn.example.net", "api.example.com", "ipv6.example.com"]
    )
    tls = [r for r in rows if r[fields["protocol"]] >= 0 and payload["protocols"][r[fields["protocol"]]][0] == "tls"]
    assert tls and all(r[fields["server_name"]] >= 0 for r in tls)
    unverified = [r for r in rows if payload["verdicts"][r[fields["verdict"]]] == "unverified"]
    assert {r[fields["sport"]] for r in unverified} == {42000, 1023}
    assert all(r[fields["protocol"]] == -1 and r[fields["server_name"]] == -1 for r in unverified)
    assert payload["inspected"] is True

    counts = {v: int(np.count_nonzero(analysis.labels.verdict == i)) for i, v in enumerate(VERDICTS)}
    chart = html.unescape(html_report.verdict_chart(analysis))
    for name, c in counts.items():
        assert f"{name}: {c:,} flows" in chart
    facts = re.search(r'<div class="ev">.*?</div>', html_report.render(analysis)).group(0)
    assert re.findall(r'class="vd vd-(\w+)"[^>]*>([^<]*)<', facts) == [
        ("mismatch", f"MISMATCH {counts['mismatch']}"),
        ("unregistered", f"unregistered {counts['unregistered']}"),
        ("consistent", f"consistent {counts['consistent']}"),
        ("unverified", f"unverified {counts['unverified']}"),
    ]
    chart = html.unescape(html_report.protocol_chart(analysis, 10))
    assert "SSH (ssh): 6 flows; mismatch 1, consistent 5" in chart
    assert "BitTorrent (bittorrent): 6 flows; unregistered 6" in chart


def test_not_inspected_says_so(analysis, browser, tmp_path):
    """After ``--dissect none`` the report says payloads were not looked at, not that nothing was found."""
    import dataclasses

    from classifier.evidence.verdict import V_UNVERIFIED

    labels = dataclasses.replace(
        analysis.labels,
        verdict=np.full(len(analysis.flows), V_UNVERIFIED, np.uint8),
        protocol=np.zeros(len(analysis.flows), np.uint8),
        evidence_side=np.full(len(analysis.flows), -1, np.int8),
    )
    a = dataclasses.replace(analysis, labels=labels, payload_inspected=False)
    text = html_report.render(a)
    assert text.count("Payload not inspected (--dissect none)") == 2
    assert '<dt>Payload evidence</dt><dd class="none">not inspected (--dissect none)</dd>' in text
    assert html_report.table_payload(a)["inspected"] is False
    out = tmp_path / "none.html"
    out.write_text(text, encoding="utf-8")
    logs = _open(browser, out)
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    _wait_matches(browser, len(a.flows))
    assert {r["payload"] for r in _visible_rows(browser)} == {"not inspected"}
    _set_filter(browser, "not inspected 42000", int(np.count_nonzero(a.flows.server_port == 42000)))


def test_report_in_browser(browser, report, analysis):
    from selenium.webdriver.common.by import By

    logs = _open(browser, report)
    errors = [e for e in logs if e.get("level") == "SEVERE"]
    assert not errors, errors

    # the registry's warning is visible above the fold at 1366x768, in the registry's words
    assert browser.execute_script("return [innerWidth, innerHeight]") == [1366, 768]
    banner = browser.find_element(By.ID, "pc-notice")
    assert banner.is_displayed()
    rect = browser.execute_script("return arguments[0].getBoundingClientRect().toJSON()", banner)
    assert 0 <= rect["top"] < 768 and rect["bottom"] <= 768, rect
    assert NOTICE_START in banner.text
    assert "labels flows by port number only" in banner.text
    assert analysis.registry.provenance.line() in banner.text

    # the table fits the 1366 px width (no sideways scrolling)
    overflow = browser.execute_script(
        "const t = document.querySelector('.tablewrap'); return t.scrollWidth - t.clientWidth"
    )
    assert overflow <= 0

    # charts rendered with a real size
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('#pc-charts svg.chart')].map(s => "
        "{const r = s.getBoundingClientRect(); return [r.width, r.height, s.querySelectorAll('rect').length];})"
    )
    assert len(sizes) == 5
    assert all(w > 100 and h > 40 and n > 0 for w, h, n in sizes), sizes
    evidence = browser.execute_script(
        "return [...document.querySelectorAll('#pc-evidence svg.chart')].map(s => "
        "[s.getBoundingClientRect().width, [...s.querySelectorAll('text.bl')].map(t => t.textContent)])"
    )
    assert [labels for _, labels in evidence] == [
        ["mismatch", "unregistered", "consistent", "unverified"],
        ["TLS", "DNS", "HTTP", "SSH", "BitTorrent"],
    ]
    assert all(w > 100 for w, _ in evidence)
    values = browser.execute_script(
        "return [...document.querySelector('#pc-evidence svg.chart').querySelectorAll('text.bv')]"
        ".map(t => t.textContent)"
    )
    counts = [_int(v.split()[0]) for v in values]
    verdict = analysis.labels.verdict
    assert counts == [int(np.count_nonzero(verdict == v)) for v in (2, 3, 1, 0)]

    # flagged rows come first, worst first, in the initial order
    n = len(analysis.flows)
    n_flagged = int(np.count_nonzero(analysis.labels.severity))
    assert 0 < n_flagged < 100
    _wait_matches(browser, n)
    rows = _visible_rows(browser)
    assert len(rows) == min(100, n)
    flagged_now = [bool(r["flags"]) for r in rows]
    assert flagged_now == [True] * n_flagged + [False] * (len(rows) - n_flagged)
    # service mismatches first (severity 6): the payload says ssh where the registry says https
    assert rows[0]["flags"] == "service-mismatch" and rows[1]["flags"] == "service-mismatch"
    assert (rows[0]["service"], rows[0]["payload"], rows[0]["port"]) == ("https", "ssh MISMATCH", "443/tcp")
    assert (rows[1]["service"], rows[1]["payload"], rows[1]["port"]) == ("mysql", "http MISMATCH", "3306/tcp")
    assert "unauthorized-use-known" in rows[2]["flags"]
    cell = browser.find_element(By.CSS_SELECTOR, "#pc-table tbody tr:first-child td.payload")
    assert cell.get_attribute("title") == "port 443/tcp registered for https; payload is SSH"
    badge = cell.find_element(By.CSS_SELECTOR, ".vd-mismatch")
    assert badge.value_of_css_property("background-color") == "rgba(183, 28, 28, 1)"
    payloads = {r["payload"] for r in rows}
    assert {"tls consistent www.example.com", "http consistent", "bittorrent unregistered", "\u2014 unverified"} <= (
        payloads
    )

    # sorting by bytes: largest first, then smallest first, with the real values
    all_bytes = sorted((analysis.flows.bytes_c2s + analysis.flows.bytes_s2c).tolist())
    head = browser.find_element(By.CSS_SELECTOR, 'th[data-col="bytes"] button')
    head.click()
    got = [_int(r["bytes"]) for r in _visible_rows(browser)]
    assert got == all_bytes[::-1][: len(got)]
    assert browser.find_element(By.CSS_SELECTOR, 'th[data-col="bytes"]').get_attribute("aria-sort") == "descending"
    head.click()
    got = [_int(r["bytes"]) for r in _visible_rows(browser)]
    assert got == all_bytes[: len(got)]

    # filtering by a port and by a service name leaves exactly those flows
    ports = analysis.flows.server_port
    _set_filter(browser, "42000", int(np.count_nonzero(ports == 42000)))
    rows = _visible_rows(browser)
    assert rows and all(r["port"] == "42000/tcp" and r["server"] == "203.0.113.66" for r in rows)
    assert all(r["service"] == "\u2014" and r["status"] == "unassigned" for r in rows)
    _set_filter(browser, "ssh", int(np.count_nonzero(ports == 22)) + 1)  # the ssh port, and ssh on 443
    assert {(r["service"], r["payload"]) for r in _visible_rows(browser)} == {
        ("https", "ssh MISMATCH"),
        ("ssh", "ssh consistent"),
    }
    # the payload's protocol, the verdict and the TLS server name are filter words too
    verdict = analysis.labels.verdict
    _set_filter(browser, "mismatch", int(np.count_nonzero(verdict == 2)))
    _set_filter(browser, "unregistered bittorrent", int(np.count_nonzero(verdict == 3)))
    sni = analysis.flows.server_name
    _set_filter(browser, "mail.example.org", int(np.count_nonzero(sni == b"mail.example.org")))
    assert {r["payload"] for r in _visible_rows(browser)} == {"tls consistent mail.example.org"}
    # sorting by payload: mismatches, then unregistered, consistent, unverified
    browser.find_element(By.CSS_SELECTOR, 'th[data-col="payload"] button').click()
    _set_filter(browser, "", n)
    by_payload = [r["payload"].split()[1] for r in _visible_rows(browser)]
    order = ["MISMATCH", "unregistered", "consistent", "unverified"]
    assert by_payload == sorted(by_payload, key=order.index) and by_payload[:2] == ["MISMATCH"] * 2
    browser.find_element(By.ID, "pc-reset").click()
    _set_filter(browser, "2606:4700 https", int(np.count_nonzero((ports == 443) & (analysis.flows.ip_version == 6))))
    _set_filter(browser, "", n)

    # flagged-only view and the pager
    browser.find_element(By.ID, "pc-flagged").click()
    _wait_matches(browser, n_flagged)
    browser.find_element(By.ID, "pc-flagged").click()
    _wait_matches(browser, n)
    browser.find_element(By.ID, "pc-next").click()
    assert "Page 2" in browser.find_element(By.ID, "pc-page").text
    assert len(_visible_rows(browser)) == min(100, n - 100)

    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


SCREENSHOT_PIXELS = """
const [png, points, done] = arguments;
const img = new Image();
img.onload = () => {
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  done({size: [img.width, img.height],
        pixels: points.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)))});
};
img.onerror = () => done({error: 'not a PNG'});
img.src = 'data:image/png;base64,' + png;
"""


def test_screenshot_of_report_top(browser, analysis, tmp_path):
    """The top of the report as the README shows it: the warning banner is at the top of the picture,
    in its colours, with the registry's notice as its text, and the capture's totals below it.

    The picture goes to tmp_path; ``PORTCLASS_UPDATE_SCREENSHOT=1`` also copies it to the README's
    tracked ``tests/artifacts/html-report.png`` (never in a normal test run).
    """
    import base64
    import datetime as dt

    page = tmp_path / "readme.html"
    html_report.write(analysis, "html", page, generated=dt.datetime(2026, 8, 17, 9, 30, tzinfo=dt.UTC))
    _open(browser, page)
    shot = tmp_path / "html-report.png"
    assert browser.save_screenshot(str(shot))
    banner = browser.execute_script(
        """
        const b = document.getElementById('pc-notice'), r = b.getBoundingClientRect(), s = getComputedStyle(b);
        const rgb = v => v.match(/\\d+/g).slice(0, 3).map(Number);
        return {top: r.top, left: r.left, bottom: r.bottom, right: r.right, bg: rgb(s.backgroundColor),
                edge: rgb(s.borderLeftColor), edgeWidth: parseFloat(s.borderLeftWidth),
                notice: b.querySelector('.notice').textContent,
                packets: document.querySelector('#pc-totals').textContent};
        """
    )
    assert banner["notice"].startswith(NOTICE_START) and "NECESSARILY CORRESPONDS TO THE ASSIGNED SERVICE" in (
        banner["notice"]
    )
    assert 0 <= banner["top"] < 120 and banner["bottom"] < 768, banner  # at the top, whole, in the picture
    assert f"{analysis.stats.packets:,}" in banner["packets"]
    # the picture itself: its size is the viewport's; the banner's background and its red left edge are there
    x_in, y_in = int(banner["right"]) - 8, int(banner["top"]) + 4  # inside, right of any text
    x_edge = int(banner["left"] + banner["edgeWidth"] / 2)
    got = browser.execute_async_script(
        SCREENSHOT_PIXELS, base64.b64encode(shot.read_bytes()).decode(), [[x_in, y_in], [x_edge, y_in + 10]]
    )
    assert got.get("size") == [1366, 768], got
    inside, edge = got["pixels"]
    assert all(abs(a - b) <= 2 for a, b in zip(inside, banner["bg"], strict=True)), (inside, banner["bg"])
    assert all(abs(a - b) <= 2 for a, b in zip(edge, banner["edge"], strict=True)), (edge, banner["edge"])
    assert banner["bg"] != banner["edge"]
    if os.environ.get("PORTCLASS_UPDATE_SCREENSHOT") == "1":
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / "html-report.png")


def many_flows(registry, n: int, seed: int = 3) -> pipeline.Analysis:
    """An hour of ``n`` one-packet flows between random hosts (array-built, for size and speed checks)."""
    rng = np.random.default_rng(seed)
    src = np.zeros((n, 2), np.uint64)
    dst = np.zeros((n, 2), np.uint64)
    src[:, 1] = np.uint64(0xFFFF_0A00_0000) + rng.integers(0, 4000, n).astype(np.uint64)  # 10.0.x.x
    dst[:, 1] = np.uint64(0xFFFF_C000_0000) + rng.integers(0, 100_000, n).astype(np.uint64)  # 192.x.x.x
    ports = rng.choice(
        [80, 443, 53, 22, 42000, 1023, 8080, 25, 61000], n, p=[0.2, 0.45, 0.2, 0.05, 0.01, 0.01, 0.04, 0.02, 0.02]
    )
    batch = make_batch(
        ts_ns=np.sort(T0 + rng.integers(0, 3600 * 10**9, n)),
        src=src,
        dst=dst,
        sport=rng.integers(49152, 65535, n),
        dport=ports,
        proto=np.where(ports == 53, PROTO_UDP, PROTO_TCP),
        tcp_flags=np.where(ports == 53, 0, SYN),
        wire_len=rng.integers(60, 1500, n),
    )
    agg = FlowAggregator(int(pipeline.DEFAULT_IDLE_TIMEOUT_S * 1e9))
    agg.add(batch)
    flows, labels = pipeline.label_flows(agg.result(), registry)
    return pipeline.Analysis(flows, labels, agg.stats, registry, inputs=["big.pcap"])


def test_tens_of_thousands_of_flows(browser, reg, tmp_path):
    """40,000 flows: the page loads, sorts and filters (one page of rows in the DOM); a row cap shows its note
    and keeps flagged rows.  No timed assertion: speed is for benchmarks, a loaded machine is no bug."""
    a = many_flows(reg, 40_000)
    n = len(a.flows)
    assert n == 40_000
    out = tmp_path / "big.html"
    html_report.write(a, "html", out)
    assert out.stat().st_size < 4_000_000
    logs = _open(browser, out)
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    _wait_matches(browser, n)
    assert len(_visible_rows(browser)) == 100  # paginated: the DOM holds one page
    browser.find_element("css selector", 'th[data-col="bytes"] button').click()
    top = [_int(r["bytes"]) for r in _visible_rows(browser)]
    assert top == sorted((a.flows.bytes_c2s + a.flows.bytes_s2c).tolist(), reverse=True)[:100]
    _set_filter(browser, "42000", int(np.count_nonzero(a.flows.server_port == 42000)))

    capped = tmp_path / "capped.html"
    html_report.write(a, "html", capped, max_rows=5_000)
    _open(browser, capped)
    note = browser.find_element("id", "pc-cap-note")
    assert note.is_displayed() and "5,000 worst-first flows of 40,000" in note.text
    _wait_matches(browser, 5_000)
    browser.find_element("id", "pc-flagged").click()
    _wait_matches(browser, min(5_000, int(np.count_nonzero(a.labels.severity))))


def test_hostile_strings_are_escaped(browser, tmp_path):
    """Registry text, file names and warnings that look like markup stay text and never run."""
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    records = [
        Record(name="web<b>x</b>", port_low=80, port_high=80, transport="tcp", description=evil),
        Record(name="</script><script>window.__pwned=3</script>", port_low=22, port_high=22, transport="tcp",
               description="ssh & \"quotes\" 'apos'"),
    ]  # fmt: skip
    prov = Provenance(source=f"/tmp/{evil}.xml", sha256="f" * 64, format="xml", edition="2026-08-17")
    registry = compile_records(records, prov)
    # a TLS server name comes from packets: markup in it (at most SERVER_NAME_BYTES) stays text too
    evil_sni = '<img src=x onerror="window.__pwned=5">'
    pk = _tcp(T0, "10.9.0.1", 50001, "192.0.2.80", 80, 4, 500, c_sig="tls-client-hello", sni=evil_sni)
    pk += _tcp(T0 + 10**9, "10.9.0.1", 50002, "192.0.2.22", 22, 4, 90)
    a = build_analysis(registry, pk)
    a.inputs = [f"captures/{evil}.pcap"]
    a.stats.files = [f"{evil}.pcap"]
    a.stats.warnings.append(f"{evil}: packet 3: bad checksum")
    a.stats.skipped_linktype.update({"<svg onload=window.__pwned=4>": 2})
    out = tmp_path / "hostile.html"
    html_report.write(a, "html", out)
    text = out.read_text(encoding="utf-8")

    # statically: no raw markup from the data anywhere
    assert "<script>window" not in text and "<img src=x" not in text and "<svg onload" not in text
    assert "<b>x</b>" not in text
    assert text.count("<script") == 2  # the JSON block and the report's own script

    logs = _open(browser, out)
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    assert browser.execute_script("return window.__pwned") is None
    assert (
        browser.execute_script(
            "return document.querySelectorAll('img, script:not([id=pc-data]):not(:last-of-type)').length"
        )
        == 0
    )
    banner = browser.find_element("id", "pc-notice").text
    assert evil in banner  # provenance shown literally
    rows = _visible_rows(browser)
    services = {r["service"] for r in rows}
    assert services == {"web<b>x</b>", "</script><script>window.__pwned=3</script>"}
    # TLS on a port registered for web<b>x</b> only: a mismatch, with the hostile name and SNI as text
    assert rows[0]["payload"] == f"tls MISMATCH {evil_sni}"
    cell = browser.find_element("css selector", "#pc-table tbody tr:first-child td.payload")
    assert cell.get_attribute("title") == "port 80/tcp registered for web<b>x</b>; payload is TLS"
    assert cell.find_element("css selector", ".sni").text == evil_sni
    titles = browser.execute_script(
        "return [...document.querySelectorAll('#pc-table tbody td')].map(td => td.title).filter(Boolean)"
    )
    assert evil in titles
    chart_titles = browser.execute_script(
        "return [...document.querySelectorAll('#pc-charts svg title')].map(t => t.textContent).join('\\n')"
    )
    assert evil in chart_titles
    warnings = browser.find_element("css selector", "details.warnings").text
    assert f"{evil}: packet 3: bad checksum" in warnings


@pytest.mark.skipif(
    not (ROOT / "captures" / "sample.pcap").exists() or not (ROOT / "classifier" / "capture" / "reader.py").exists(),
    reason="captures/sample.pcap and the capture reader are not there yet",
)
def test_cli_end_to_end(browser, tmp_path, xml_path):
    out = tmp_path / "sample.html"
    r = run_cli("--registry", str(xml_path), "captures/sample.pcap", "--format", "html", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    assert NOTICE_START in text
    logs = _open(browser, out)
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    assert int(browser.find_element("id", "pc-count").get_attribute("data-matches")) > 0
    # the capture's three deliberate mismatches lead the table, most bytes first
    rows = _visible_rows(browser)
    assert [(r["port"], r["service"], r["payload"]) for r in rows[:3]] == [
        ("3306/tcp", "mysql", "http MISMATCH GET db.example.com/"),  # and what each flow said
        ("443/tcp", "https", "ssh MISMATCH OpenSSH_9.6 -> OpenSSH_9.2"),
        ("40000/udp", "safetynetp", "dns MISMATCH example.org AAAA"),
    ]
    assert all(r["flags"] == "service-mismatch" for r in rows[:3])
    assert "tls consistent example.com" in {r["payload"] for r in rows}


@pytest.mark.skipif(not (ROOT / "captures" / "sample.pcap").exists(), reason="captures/sample.pcap is not there")
def test_file_and_conn_state_columns(browser, tmp_path, xml_path):
    """Two capture files: each row names its file (full path on hover) and Zeek's conn_state (meaning on
    hover), the same as the JSON Lines output says; a one-day capture's first-seen cells are times of day."""
    import json

    copy = tmp_path / "b-copy.pcap"
    shutil.copyfile(ROOT / "captures" / "sample.pcap", copy)
    caps = [str(ROOT / "captures" / "sample.pcap"), str(copy)]
    out = tmp_path / "two.html"
    r = run_cli("--registry", str(xml_path), *caps, "--format", "html", "-o", str(out), "--idle-timeout", "0")
    assert r.returncode == 0, r.stderr
    lines = run_cli("--registry", str(xml_path), *caps, "-f", "jsonl", "--idle-timeout", "0").stdout.splitlines()
    docs = [json.loads(x) for x in lines[1:]]
    assert len(docs) == 38  # 19 flows per file, never merged
    logs = _open(browser, out)
    assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    browser.find_element("id", "pc-pagesize").send_keys("500")
    _wait_matches(browser, 38)
    cells = browser.execute_script(
        """
        const cols = [...document.querySelectorAll('#pc-table thead th')].map(th => th.dataset.col);
        const at = c => cols.indexOf(c);
        return [...document.querySelectorAll('#pc-table tbody tr')].map(tr => ({
            port: tr.cells[at('port')].textContent, client: tr.cells[at('client')].textContent,
            file: tr.cells[at('file')].textContent, path: tr.cells[at('file')].title,
            state: tr.cells[at('state')].textContent, meaning: tr.cells[at('state')].title,
            first: tr.cells[at('first')].textContent, when: tr.cells[at('first')].title}));
        """
    )
    assert len(cells) == 38
    assert sorted(c["file"] for c in cells) == ["b-copy.pcap"] * 19 + ["sample.pcap"] * 19
    assert {(c["file"], c["path"]) for c in cells} == {("sample.pcap", caps[0]), ("b-copy.pcap", caps[1])}
    # Zeek's states, as the JSON Lines output gives them, flow by flow
    def client(d: dict) -> str:
        ip = d["source"]["ip"]
        return f"[{ip}]:{d['source']['port']}" if ":" in ip else f"{ip}:{d['source']['port']}"

    expect = sorted(
        (f"{d['destination']['port']}/{d['network']['transport']}", client(d), Path(d["log"]["file"]["path"]).name,
         d["portclass"]["conn_state"]) for d in docs
    )  # fmt: skip
    assert sorted((c["port"], c["client"], c["file"], c["state"]) for c in cells) == expect
    states = {c["port"]: (c["state"], c["meaning"]) for c in cells}
    assert states["230/tcp"] == ("REJ", "Zeek conn_state REJ: connection attempt rejected")
    assert states["42000/tcp"][0] == "RSTO" and "originator aborted" in states["42000/tcp"][1]
    assert states["3306/tcp"] == ("SF", "Zeek conn_state SF: normal establishment and termination")
    assert states["514/udp"][0] == "S0"
    # one day: the header carries the date, the cells the time of day (the full time on hover)
    header = browser.find_element("css selector", 'th[data-col="first"]').text
    assert header.replace("\n", " ").startswith("First seen (UTC, 2024-01-01)")
    mysql = next(c for c in cells if c["port"] == "3306/tcp")
    assert (mysql["first"], mysql["when"]) == ("00:00:17.001", "2024-01-01 00:00:17.001 UTC")


# --------------------------------------------------------------------------- timeline over any span


def test_time_bins_for_any_span():
    """Bins of int64 ns times over spans up to the whole int64 range (the old product overflowed past ~4.9 years)."""
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    ts = np.array([lo, lo + 1, -1, 0, hi - 1, hi], dtype=np.int64)
    idx = html_report.time_bins(ts, lo, hi - lo, 60)
    assert idx.tolist() == [0, 0, 29, 29, 59, 59]  # bins a little wider than span / 60: the last one holds the end
    years = 10 * 365 * 86_400 * 10**9  # ten years from 2016: the span that broke the chart
    ts = np.array([T0 - years, T0 - years // 2, T0], dtype=np.int64)
    assert html_report.time_bins(ts, T0 - years, years, 60).tolist() == [0, 29, 59]


@pytest.mark.parametrize("name", ("viber", "rtmp", "openvpn", "ookla", "fins"))
def test_real_captures_spanning_years(name, tmp_path, xml_path):
    """nDPI's captures whose flows start years apart: the report is written, every flow is in one
    timeline column, and the time axis shows dates (these failed with a ValueError, no file)."""
    from tests.shared import shared

    out = tmp_path / f"{name}.html"
    r = run_cli("--registry", str(xml_path), str(shared("captures", "ndpi", "pcap", f"{name}.pcap")), "-f", "html",
                "-o", str(out))  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    page = out.read_text()
    flows = int(re.search(r'<div class="k">Flows</div><div class="v">([\d,]+)<', page)[1].replace(",", ""))
    columns = [int(n.replace(",", "")) for n in re.findall(r"UTC \(\+[^)]*\): ([\d,]+) flows, [\d,]+ flagged", page)]
    assert sum(columns) == flows > 0
    labels = re.findall(r'class="ax" text-anchor="\w+">([^<]*)<', page)
    assert len(labels) == 7 and all(re.fullmatch(r"\d{4}-\d\d-\d\d", x) for x in labels), labels
    assert labels == sorted(labels) and labels[0] < labels[-1]
