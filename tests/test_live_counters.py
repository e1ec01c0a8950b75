"""The scapy backend's kernel counters count only what passed the capture filter.

scapy opens the packet socket (with a buffer of a few kilobytes) before it attaches the filter, so
any loopback traffic in between filled that buffer and the kernel counted it as dropped: a run with
no loss reported drops (test_live's ``dropped == 0`` failed whenever other loopback traffic ran).
The check runs in a fresh process, as ``portclass live`` does: its first filter is the slow one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CHILD = r"""
import json, socket, sys, threading, time
from classifier.live.backends import ScapyBackend

noise_port, port = int(sys.argv[1]), int(sys.argv[2])
stop = threading.Event()

def noise():  # loopback traffic the filter leaves out, before and while the socket opens
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while not stop.is_set():
        for _ in range(100):
            s.sendto(b"n" * 200, ("127.0.0.1", noise_port))
        time.sleep(0.0005)

threading.Thread(target=noise, daemon=True).start()
time.sleep(0.3)
b = ScapyBackend(["lo"], f"udp port {port}")
b.start()
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", port))
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
    for i in range(5):
        c.sendto(b"wanted %d" % i, ("127.0.0.1", port))
time.sleep(0.5)
stop.set()
frames = sum(len(x.batch) for x in b.poll(0.5))
b.stop()
frames += sum(len(x.batch) for x in b.drain())
c = b.counters()[0]
b.close()
print(json.dumps({"received": c.received, "dropped": c.dropped, "frames": frames}))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="opening a packet socket needs root (CAP_NET_RAW)")
def test_scapy_counts_only_filtered_packets_with_other_loopback_traffic() -> None:
    from tests.test_evidence_servers import free_port

    noise_port, port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    res = subprocess.run([sys.executable, "-c", CHILD, str(noise_port), str(port)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    # loopback: each datagram once (the sent copy is filtered out by `inbound`), none dropped
    assert got == {"received": 5, "dropped": 0, "frames": 5}, res.stderr
