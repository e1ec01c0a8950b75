"""Checks before a live capture starts, each failing as one line that says how to fix it.

Interfaces (``list_interfaces``), capture permission (``can_capture``), the backend's program
(``find_program``) and the BPF expression (``compile_bpf``, with libpcap's own compiler through
ctypes on a dead handle: no interface, no privileges, the message libpcap would give dumpcap).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import socket
import subprocess
from pathlib import Path

from ..errors import PortclassError

DEBIAN_PACKAGE = {
    "dumpcap": "wireshark-common (apt-get install tshark)",
    "tshark": "tshark (apt-get install tshark)",
    "tcpdump": "tcpdump (apt-get install tcpdump)",
    "libpcap": "libpcap0.8 (apt-get install libpcap0.8)",
}
"""Program -> the Debian package that provides it, as error messages name it."""

PERMISSION_FIX = (
    "run as root, or let your user capture: `sudo setcap cap_net_raw,cap_net_admin=eip /usr/bin/dumpcap` "
    "(or `sudo dpkg-reconfigure wireshark-common` and `sudo usermod -a -G wireshark $USER`)"
)

ARPHRD_TO_DLT = {1: 1, 772: 1, 65534: 12, 512: 12, 776: 12, 778: 12, 823: 12, 24: 1, 32: 12, 280: 113}
"""Linux ARPHRD_* device type -> the pcap link type libpcap uses for it (others: LINUX_SLL, 113)."""
DLT_LINUX_SLL = 113


class LiveError(PortclassError):
    """A live capture that cannot start or run (one line with the fix; exit code 2)."""


def list_interfaces() -> list[str]:
    """Names of the network interfaces of this host (network namespace), plus libpcap's ``any``."""
    try:
        names = [name for _i, name in socket.if_nameindex()]
    except OSError:  # pragma: no cover - no netlink
        names = sorted(p.name for p in Path("/sys/class/net").iterdir()) if Path("/sys/class/net").is_dir() else []
    return names + ["any"]


def dumpcap_interfaces(dumpcap: str) -> list[str]:
    """The capture sources ``dumpcap -D`` lists (network devices and others such as ``nflog``)."""
    try:
        r = subprocess.run([dumpcap, "-D"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in r.stdout.splitlines():
        _num, _, rest = line.partition(". ")
        if rest:
            out.append(rest.split(" (", 1)[0].strip())
    return out


def check_interfaces(ifaces: list[str], dumpcap: str | None = None) -> None:
    """Raise ``LiveError`` naming the interfaces there are when one of ``ifaces`` does not exist.

    With ``dumpcap`` (its path), what ``dumpcap -D`` lists counts too (``nflog``, ``dbus-system``...).
    """
    known = list_interfaces()
    for name in ifaces:
        if name in known or name.isdigit():
            continue
        if dumpcap is not None:
            extra = [x for x in dumpcap_interfaces(dumpcap) if x not in known]
            known += extra
            dumpcap = None
            if name in known:
                continue
        raise LiveError(f"no interface named {name!r}; interfaces here: {', '.join(known)}")


def linktype_of(iface: str) -> int:
    """The pcap link type a capture on ``iface`` has (Linux: from the device type in /sys)."""
    if iface == "any":
        return DLT_LINUX_SLL
    try:
        arphrd = int(Path(f"/sys/class/net/{iface}/type").read_text().strip())
    except (OSError, ValueError):
        return 1
    return ARPHRD_TO_DLT.get(arphrd, DLT_LINUX_SLL)


def is_loopback(iface: str) -> bool:
    """True for a loopback device (libpcap skips the outgoing copy of each packet there)."""
    try:
        return int(Path(f"/sys/class/net/{iface}/type").read_text().strip()) == 772
    except (OSError, ValueError):
        return iface == "lo"


def kernel_filter(iface: str, bpf: str | None) -> str | None:
    """The filter a packet socket of our own attaches for ``iface``: ``bpf``, plus ``inbound`` on loopback.

    A packet socket on loopback gets every packet twice (as sent and as received); libpcap
    throws the sent copy away in user space, and ``inbound`` does the same in the kernel, so the
    socket's buffer holds each packet once.  Only for sockets filtered by the kernel alone
    (scapy's): libpcap re-runs filters in user space, where ``inbound`` cannot be evaluated.

    >>> kernel_filter("lo", "udp port 53")
    'inbound and (udp port 53)'
    """
    if not is_loopback(iface):
        return bpf
    return f"inbound and ({bpf})" if bpf else "inbound"


def find_program(name: str) -> str:
    """Absolute path of ``name`` on $PATH, or ``LiveError`` naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        raise LiveError(f"{name} not found on PATH: install the Debian package {DEBIAN_PACKAGE.get(name, name)}")
    return path


def can_capture() -> bool:
    """True when this process may open a packet socket (root or CAP_NET_RAW)."""
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        return False
    except OSError:  # pragma: no cover - no AF_PACKET (not Linux)
        return os.geteuid() == 0
    s.close()
    return True


def permission_error(what: str, fix: str = PERMISSION_FIX) -> LiveError:
    """The one-line error for a capture refused for lack of privileges, with how to grant them."""
    return LiveError(f"no permission to capture {what} (needs root or CAP_NET_RAW): {fix}")


def exec_refused(exc: PermissionError, interfaces: list[str], program: str) -> LiveError:
    """The capture program could not even be run: a permission problem, with the same fix.

    The kernel refuses to exec a program whose file capabilities exceed the caller's bounding
    set (EPERM), and a dumpcap only the group ``wireshark`` may run gives EACCES.
    """
    why = f"{exc.filename or program}: {exc.strerror or exc}"
    return permission_error(f"on {', '.join(interfaces)} with {program} ({why})")


# ---- BPF ------------------------------------------------------------------------------------


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


_PCAP: ctypes.CDLL | None = None


def _libpcap() -> ctypes.CDLL | None:
    global _PCAP
    if _PCAP is None:
        for name in (ctypes.util.find_library("pcap"), "libpcap.so.0.8", "libpcap.so.1", "libpcap.so"):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            lib.pcap_open_dead.restype = ctypes.c_void_p
            lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.pcap_compile.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(_BpfProgram),
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_uint32,
            ]
            lib.pcap_geterr.restype = ctypes.c_char_p
            lib.pcap_geterr.argtypes = [ctypes.c_void_p]
            lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
            lib.pcap_close.argtypes = [ctypes.c_void_p]
            _PCAP = lib
            break
    return _PCAP


def compile_bpf(expr: str, linktype: int = 1, snaplen: int = 262144) -> str | None:
    """Compile ``expr`` for ``linktype`` with libpcap; None when valid, else the compiler's message.

    Falls back to ``tcpdump -d`` when libpcap cannot be loaded.

    >>> compile_bpf("udp port 53") is None
    True
    >>> compile_bpf("udp prt 53")
    "can't parse filter expression: syntax error"
    """
    lib = _libpcap()
    if lib is None:
        return _compile_with_tcpdump(expr, linktype)
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:  # pragma: no cover - out of memory
        return "libpcap could not open a handle to compile the filter"
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
            return (lib.pcap_geterr(handle) or b"invalid filter").decode(errors="replace")
        lib.pcap_freecode(ctypes.byref(prog))
        return None
    finally:
        lib.pcap_close(handle)


def _compile_with_tcpdump(expr: str, linktype: int) -> str | None:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        return None  # nothing to check with: the capture program will say
    names = {1: "EN10MB", 12: "RAW", 113: "LINUX_SLL", 0: "NULL"}
    r = subprocess.run(
        [tcpdump, "-d", "-y", names.get(linktype, "EN10MB"), expr], capture_output=True, text=True, timeout=10
    )
    if r.returncode == 0:
        return None
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("Warning")]
    return (lines[-1] if lines else "invalid filter").removeprefix("tcpdump: ")


def check_bpf(expr: str | None, ifaces: list[str]) -> None:
    """Raise ``LiveError`` with the compiler's message when ``expr`` is not a valid capture filter."""
    if not expr:
        return
    for lt in sorted({linktype_of(i) for i in ifaces}):
        msg = compile_bpf(expr, lt)
        if msg is not None:
            raise LiveError(
                f"invalid capture filter {expr!r}: {msg} (BPF syntax as in tcpdump, e.g. 'tcp port 80 or udp port 53')"
            )
