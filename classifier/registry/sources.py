"""Where the registry comes from: explicit file, environment, the user's imported copy, the system.

Order of discovery: ``--registry FILE``, else ``$PORTCLASS_REGISTRY``, else the registry the user
imported or updated (``portclass registry import|update``), else the newest full registry found on
the system (Debian's ipv6toolkit CSV), else a partial digest (Wireshark's services, /etc/services)
with a notice of what a partial source cannot tell.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from ..errors import RegistryError
from . import cache
from .compile import CompiledRegistry, compile_records
from .download import DEADLINE, Progress, download
from .files import read_regular
from .model import Provenance
from .parse import MIN_RECORDS, file_date, parse_bytes

IANA_XML_URL = "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.xml"
SYSTEM_FULL = (
    Path("/usr/share/ipv6toolkit/service-names-port-numbers.csv"),
    Path("/usr/share/iana-registry/service-names-port-numbers.xml"),
)
SYSTEM_PARTIAL = (Path("/usr/share/wireshark/services"), Path("/etc/services"))
PARTIAL_NOTICE = (
    "partial registry source: it does not list every port (a digest of assigned names, or an excerpt), so "
    "the ports it omits are unknown, not unassigned, and known unauthorized use may be missing; "
    "get the full registry with 'portclass registry update' (or 'apt install ipv6toolkit')"
)
LOCK_WAIT = 60.0
"""Seconds an install waits for another one to finish before giving up with one line."""
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
        partial_reason=result.partial_reason,
        skipped=result.skipped,
        skipped_example=result.skipped_example,
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
        path, data = stored
        return compile_bytes(data, str(path), file_date(path))
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


@contextlib.contextmanager
def _locked(*, shared: bool = False) -> Iterator[None]:
    """Hold the registry install lock (``flock`` on ``.lock`` in the data directory).

    Installs take it exclusively, so concurrent ``registry import``/``update`` run one after the other;
    a reader of the kept source takes it shared, so no install removes the file under it. A reader
    that cannot create the lock (a read-only data directory) reads without it: nobody can install there.
    """
    d = data_dir()
    fd = None
    try:
        if not shared:
            d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if not shared:
            raise RegistryError(f"cannot write the registry directory ({exc.strerror})", path=d) from None
    if fd is None:
        yield
        return
    try:
        give_up = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > give_up:
                    raise RegistryError(
                        f"another portclass has held the registry lock for {LOCK_WAIT:.0f} s; try again",
                        path=d / ".lock",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _stored_source() -> tuple[Path, bytes] | None:
    """The kept source of the user's registry and its bytes, read under the shared lock."""
    d = data_dir()
    if not d.is_dir():
        return None
    with _locked(shared=True):
        cands = sorted(d.glob("source*"), key=lambda p: p.stat().st_mtime, reverse=True)
        sha = cache.source_sha(current_path())
        named = [p for p in cands if sha and p.name.startswith(f"source-{sha[:16]}.")]
        for cand in named + cands:
            try:
                return cand, read_regular(cand)
            except RegistryError:
                continue
    return None


def install(data: bytes, source: str, fdate: str | None = None, *, min_records: int = 1) -> CompiledRegistry:
    """Validate and compile ``data``, then make it the user's default registry, atomically as a whole.

    Nothing is replaced unless the new registry parsed, compiled and passed the checks. Under the
    install lock, the source is kept as ``source-<sha256>.<ext>`` (named by its content), then the
    compiled ``current.pcreg`` replaces the old one (the commit point: it names the source's sha256),
    then other kept sources are removed. So the compiled default and the kept source are always one
    edition, whatever runs at the same time, and a crash leaves the previous pair usable.
    """
    reg = compile_bytes(data, source, fdate, use_cache=False)
    n = reg.provenance.records
    if n < min_records:
        raise RegistryError(
            f"holds only {n} records (a complete registry has over {min_records}); not installed", path=source
        )
    d = data_dir()
    ext = {"xml": "xml", "csv": "csv", "text": "txt", "services": "services"}[reg.provenance.format]
    keep = f"source-{reg.provenance.sha256[:16]}.{ext}"
    with _locked():
        try:
            cache.atomic_write(d / keep, data)
            cache.save(reg, current_path())
            for old in d.glob("source*"):
                if old.name != keep:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot install the registry ({exc.strerror or exc})", path=d) from None
    try:
        cache.save(reg, cache_dir() / f"{reg.provenance.sha256}.pcreg")
    except OSError:
        pass
    return reg


def import_file(path: str | Path) -> CompiledRegistry:
    """``portclass registry import FILE``: validate, compile, cache and make it the default."""
    path = Path(path)
    return install(_read(path), str(path.resolve()), file_date(path))


def update(
    url: str = IANA_XML_URL, progress: Progress | None = None, *, deadline: float = DEADLINE
) -> CompiledRegistry:
    """``portclass registry update``: download (deadline, size cap), verify (> 10,000 records), install."""
    data = download(url, progress, deadline=deadline)
    return install(data, url, min_records=MIN_RECORDS)


def clear_user_registry() -> None:
    """Forget the imported/updated registry (used by tests and ``registry forget``)."""
    shutil.rmtree(data_dir(), ignore_errors=True)
