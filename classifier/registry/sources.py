"""Where the registry comes from: explicit file, environment, the user's imported copy, the system.

Order of discovery: ``--registry FILE``, else ``$PORTCLASS_REGISTRY``, else the registry the user
imported or updated (``portclass registry import|update``), else the newest full registry found on
the system (Debian's ipv6toolkit CSV), else a partial digest (Wireshark's services, /etc/services)
with a notice of what a partial source cannot tell.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import platformdirs

from ..errors import RegistryError
from . import cache
from .compile import CompiledRegistry, compile_records
from .files import read_regular
from .model import Provenance
from .parse import file_date, parse_bytes

IANA_XML_URL = "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.xml"
SYSTEM_FULL = (
    Path("/usr/share/ipv6toolkit/service-names-port-numbers.csv"),
    Path("/usr/share/iana-registry/service-names-port-numbers.xml"),
)
SYSTEM_PARTIAL = (Path("/usr/share/wireshark/services"), Path("/etc/services"))
MIN_RECORDS = 10_000
PARTIAL_NOTICE = (
    "partial registry source: it lists assigned service names only, so it cannot tell unassigned from "
    "reserved ports, nor which ports have known unauthorized use; get the full registry with "
    "'portclass registry update' (or 'apt install ipv6toolkit')"
)
NO_REGISTRY = (
    "no IANA port registry found: run 'portclass registry update' (downloads it from IANA), "
    "'portclass registry import FILE', install Debian's ipv6toolkit, or pass --registry FILE"
)


def cache_dir() -> Path:
    """Directory of compiled registries keyed by source sha256 (the user cache directory)."""
    return platformdirs.user_cache_path("portclass") / "registry"


def data_dir() -> Path:
    """Directory holding the user's imported/updated registry source and its compiled form."""
    return platformdirs.user_data_path("portclass") / "registry"


def current_path() -> Path:
    """The compiled registry the user imported or updated last (the default)."""
    return data_dir() / "current.pcreg"


def compile_bytes(data: bytes, source: str, fdate: str | None = None, *, use_cache: bool = True) -> CompiledRegistry:
    """Parse and compile registry bytes, reusing the cache entry for the same sha256."""
    sha = hashlib.sha256(data).hexdigest()
    entry = cache_dir() / f"{sha}.pcreg"
    if use_cache:
        reg = cache.load(entry)
        if reg is not None:
            reg.provenance.source = source
            return reg
    result = parse_bytes(data, source, file_date=fdate)
    prov = Provenance(
        source=source,
        sha256=sha,
        format=result.format,
        edition=result.edition,
        edition_kind=result.edition_kind,
        full=result.full,
        notice=result.notice,
    )
    reg = compile_records(result.records, prov)
    if use_cache:
        try:
            cache.save(reg, entry)
        except OSError:
            pass  # a read-only cache only costs speed
    return reg


def _read(path: Path) -> bytes:
    return read_regular(path)


def compile_file(path: str | Path, *, use_cache: bool = True) -> CompiledRegistry:
    """Compile a registry file of any rendering (cached by its sha256).

    >>> compile_file("/usr/share/ipv6toolkit/service-names-port-numbers.csv").provenance.format  # doctest: +SKIP
    'csv'
    """
    path = Path(path)
    return compile_bytes(_read(path), str(path), file_date(path), use_cache=use_cache)


def load_registry(path: str | Path | None = None) -> CompiledRegistry:
    """The registry to use, by the discovery order in this module's docstring.

    >>> reg = load_registry()  # doctest: +SKIP
    >>> reg.provenance.line()  # doctest: +SKIP
    'IANA registry: ... (xml, 2026-08-17, sha256 ..., full registry)'
    """
    explicit = path or os.environ.get("PORTCLASS_REGISTRY")
    if explicit:
        return compile_file(explicit)
    reg = cache.load(current_path())
    if reg is not None:
        return reg
    stored = _stored_source()
    if stored is not None:
        return compile_file(stored)
    for cand in SYSTEM_FULL:
        if cand.is_file():
            return compile_file(cand)
    for cand in SYSTEM_PARTIAL:
        if cand.is_file():
            try:
                return compile_file(cand)
            except RegistryError:
                continue
    raise RegistryError(NO_REGISTRY)


def _stored_source() -> Path | None:
    d = data_dir()
    if not d.is_dir():
        return None
    cands = sorted(d.glob("source.*"))
    return cands[0] if cands else None


def install(data: bytes, source: str, fdate: str | None = None, *, min_records: int = 1) -> CompiledRegistry:
    """Validate and compile ``data``, then make it the user's default registry, atomically.

    Nothing is replaced unless the new registry parsed, compiled and passed the checks.
    """
    reg = compile_bytes(data, source, fdate, use_cache=False)
    n = reg.provenance.records
    if n < min_records:
        raise RegistryError(
            f"holds only {n} records (a complete registry has over {min_records}); not installed", path=source
        )
    d = data_dir()
    d.mkdir(parents=True, exist_ok=True)
    ext = {"xml": "xml", "csv": "csv", "text": "txt", "services": "services"}[reg.provenance.format]
    cache.atomic_write(d / f".source.{ext}.new", data)
    cache.save(reg, current_path())
    for old in d.glob("source.*"):
        if old.name != f"source.{ext}":
            old.unlink(missing_ok=True)
    os.replace(d / f".source.{ext}.new", d / f"source.{ext}")
    try:
        cache.save(reg, cache_dir() / f"{reg.provenance.sha256}.pcreg")
    except OSError:
        pass
    return reg


def import_file(path: str | Path) -> CompiledRegistry:
    """``portclass registry import FILE``: validate, compile, cache and make it the default."""
    path = Path(path)
    return install(_read(path), str(path.resolve()), file_date(path))


def download(url: str, progress: Callable[[int, int | None], None] | None = None, timeout: float = 60.0) -> bytes:
    """Fetch ``url`` into memory, reporting (bytes so far, total or None) to ``progress``."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "portclass registry update"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total_n = int(total) if total and total.isdigit() else None
            parts: list[bytes] = []
            got = 0
            while True:
                chunk = resp.read(64 << 10)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
                if progress:
                    progress(got, total_n)
    except urllib.error.HTTPError as exc:
        raise RegistryError(f"download failed: HTTP {exc.code} {exc.reason}", path=url) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(f"download failed: {reason}", path=url) from None
    data = b"".join(parts)
    if total_n is not None and got != total_n:
        raise RegistryError(f"download truncated: got {got} of {total_n} bytes", path=url)
    return data


def update(url: str = IANA_XML_URL, progress: Callable[[int, int | None], None] | None = None) -> CompiledRegistry:
    """``portclass registry update``: download, verify (parses, is the registry, > 10,000 records), install."""
    data = download(url, progress)
    return install(data, url, min_records=MIN_RECORDS)


def clear_user_registry() -> None:
    """Forget the imported/updated registry (used by tests and ``registry forget``)."""
    shutil.rmtree(data_dir(), ignore_errors=True)
