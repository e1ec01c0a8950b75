"""Read the ports an unauthorized-use note names, from the registry's free text.

Notes look like "Unauthorized Use Known on port 42000", "Known UNAUTHORIZED USE: Ports 44515 & 44516",
"ports 2194-2196", "Ports 4490 and 4491", "ports 28017, 28018 and 28019", "Known Unauthorized Use on 100".
"""

from __future__ import annotations

import re

_LIST = re.compile(
    r"\b(?:ports?|use\s+on|uses?\s+on)\s*:?\s*"
    r"(\d{1,5}(?:\s*-\s*\d{1,5})?(?:\s*(?:,|&|and|,\s*and)\s*\d{1,5}(?:\s*-\s*\d{1,5})?)*)",
    re.I,
)
_ITEM = re.compile(r"(\d{1,5})(?:\s*-\s*(\d{1,5}))?")


def note_ports(note: str | None) -> list[tuple[int, int]]:
    """Port ranges (low, high) named in an unauthorized-use note; [] when it names none.

    >>> note_ports("Known UNAUTHORIZED USE: Ports 44515 & 44516")
    [(44515, 44515), (44516, 44516)]
    >>> note_ports("Unauthorized Use Known on ports 2194-2196")
    [(2194, 2196)]
    """
    if not note:
        return []
    out: list[tuple[int, int]] = []
    for m in _LIST.finditer(note):
        for item in _ITEM.finditer(m.group(1)):
            lo = int(item.group(1))
            hi = int(item.group(2)) if item.group(2) else lo
            if 0 <= lo <= hi <= 65535 and (lo, hi) not in out:
                out.append((lo, hi))
    return out
