"""A small Python API for notebooks: classify captures into a table of labelled flows.

>>> import classifier
>>> flows = classifier.classify("captures/sample.pcap")  # doctest: +SKIP
>>> df = flows.to_pandas()  # doctest: +SKIP
>>> df[["destination.port", "portclass.service", "network.protocol", "portclass.verdict"]]  # doctest: +SKIP
>>> flows.filter(flagged_only=True).summary()["totals"]["selection"]  # doctest: +SKIP

By default the first payload bytes of each flow are inspected too (``network.protocol``,
``portclass.verdict``: consistent / mismatch / unregistered / unverified, flag ``service-mismatch``);
``classify(..., dissect="tshark")`` adds Wireshark's opinion, ``evidence=False`` (or ``dissect="none"``)
labels by port numbers only, as the CLI's ``--dissect``.

Every result carries the registry's warning (``Flows.notice``; ``to_arrow()``'s schema metadata;
``to_pandas().attrs["portclass"]``): a label says what the IANA registry assigns to the server port,
not what the traffic is. pandas is optional (``pip install 'portclass[notebook]'``); pyarrow is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .capture.columns import PacketBatch
from .filters import FlowFilter, apply, selection_of, whole_totals
from .flows import FlowTable
from .label import FLAG_NAMES, Labels
from .pipeline import DEFAULT_IDLE_TIMEOUT_S, Analysis, analyze
from .registry.compile import CompiledRegistry

PathLike = str | os.PathLike[str]


def load_registry(path: PathLike | None = None) -> CompiledRegistry:
    """The IANA registry to label with: ``path`` if given, else portclass's usual discovery.

    Discovery: ``$PORTCLASS_REGISTRY``, the registry you imported or updated, then the system's.

    >>> reg = classifier.load_registry()  # doctest: +SKIP
    >>> reg.provenance.line()  # doctest: +SKIP
    'IANA registry: ... (xml, 2026-08-17, sha256 ..., full registry)'
    """
    from .registry.sources import load_registry as _load

    return _load(path)


def _registry(registry: CompiledRegistry | PathLike | None) -> CompiledRegistry:
    if isinstance(registry, CompiledRegistry):
        return registry
    return load_registry(registry)


DISSECTORS = ("portclass", "tshark", "none")
"""Values of ``classify(dissect=...)``, as the CLI's ``--dissect``."""


def _dissect(evidence: bool, dissect: str | None) -> dict[str, bool]:
    """``pipeline.analyze`` keywords for ``classify``'s ``evidence`` and ``dissect`` (as the CLI's ``--dissect``)."""
    if dissect is None:
        return {"evidence": bool(evidence), "tshark": False}
    if dissect not in DISSECTORS:
        raise ValueError(f"dissect must be one of {', '.join(DISSECTORS)} (or None), not {dissect!r}")
    if not evidence and dissect != "none":
        raise ValueError(f"evidence=False inspects no payload: it contradicts dissect={dissect!r}")
    return {"evidence": dissect != "none", "tshark": dissect == "tshark"}


def classify(
    paths: PathLike | Sequence[PathLike],
    registry: CompiledRegistry | PathLike | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    *,
    evidence: bool = True,
    dissect: str | None = None,
    jobs: int | None = None,
) -> Flows:
    """Read pcap/pcapng captures (files or directories) and label every flow by its server port.

    ``registry`` is a compiled registry, a registry file, or None (discovery as ``load_registry``);
    ``idle_timeout`` is the seconds of silence that end a flow (0 disables).

    ``evidence`` (default True) also looks at the first payload bytes of each flow and compares the
    protocol they show with every name the registry gives the server port: columns
    ``network.protocol``, ``portclass.verdict`` (consistent, mismatch, unregistered, unverified),
    ``portclass.verdict_note``, ``portclass.evidence.*`` and ``tls.client.server_name``, and the flag
    ``service-mismatch`` (the worst). With ``evidence=False`` labels rest on port numbers only: every
    verdict is ``unverified`` and ``network.protocol`` is None.

    ``dissect`` mirrors the CLI's ``--dissect``: ``"portclass"`` (portclass's signatures, the same as
    the default), ``"tshark"`` (also ask Wireshark's dissectors, slow; adds
    ``portclass.tshark_protocol`` and ``portclass.tshark_agreement``) or ``"none"`` (the same as
    ``evidence=False``). None follows ``evidence``; ``evidence=False`` with ``"portclass"`` or
    ``"tshark"`` is a contradiction and raises ValueError.

    ``jobs`` as the CLI's ``--jobs``: 1 one process, 2 a second (forked) process reads and inspects
    payloads while this one builds flows; None: two for inputs of 32 MiB or more on 2 CPUs or more.

    >>> flows = classifier.classify(["a.pcap", "b.pcapng"], idle_timeout=60)  # doctest: +SKIP
    >>> len(flows), flows.summary()["totals"]["flagged_flows"]  # doctest: +SKIP
    (1234, 17)
    >>> df = classifier.classify("captures/sample.pcap").to_pandas()  # doctest: +SKIP
    >>> df.loc[df["portclass.verdict"] == "mismatch",  # doctest: +SKIP
    ...        ["destination.port", "portclass.service", "network.protocol"]]
        destination.port portclass.service network.protocol
    16               443             https              ssh
    17              3306             mysql             http
    18             40000        safetynetp              dns
    >>> classifier.classify("captures/sample.pcap", dissect="tshark")  # doctest: +SKIP
    >>> classifier.classify("captures/sample.pcap", evidence=False)  # port numbers only  # doctest: +SKIP
    """
    how = _dissect(evidence, dissect)  # a bad combination fails before anything is read
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such capture: {', '.join(missing)}")
    return Flows(analyze(list(paths), _registry(registry), idle_timeout, jobs=jobs, **how))


def from_packets(
    batches: PacketBatch | Iterable[PacketBatch],
    registry: CompiledRegistry | PathLike | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    *,
    evidence: bool = True,
) -> Flows:
    """Label packets you already have as columns (``classifier.flows.make_batch``), in capture order.

    ``evidence`` inspects the payload bytes batches carry (those of ``classifier.capture.reader``;
    ``make_batch`` builds none, so its flows stay ``unverified``), as ``classify``.

    >>> from classifier.flows import make_batch
    >>> b = make_batch(ts_ns=[0, 10**6], src=["192.0.2.1", "192.0.2.2"], dst=["192.0.2.2", "192.0.2.1"],
    ...                sport=[40000, 80], dport=[80, 40000], tcp_flags=[0x02, 0x12])
    >>> classifier.from_packets(b, reg).rows()[0]["portclass.service"]  # doctest: +SKIP
    'http'
    """
    from .engine import Ended, Engine, Timeouts

    reg = _registry(registry)
    eng = Engine(reg, Timeouts(idle_s=idle_timeout), evidence=evidence, separate_files=False)
    chunks: list[Ended] = []
    for batch in [batches] if isinstance(batches, PacketBatch) else batches:
        chunks.extend(eng.add(batch))
    chunks.append(eng.flush())
    return _flows_of(Ended.concat(chunks), eng, reg, idle_timeout, evidence, eng.stats)


def _flows_of(
    ended: Any, eng: Any, reg: CompiledRegistry, idle_timeout: float, evidence: bool, stats: Any, inputs: Sequence = ()
) -> Flows:
    """The ``Flows`` of the engine's ended flows ``ended`` (one place for the Analysis the API hands out)."""
    a = Analysis(
        flows=ended.flows,
        labels=ended.labels,
        stats=stats,
        registry=reg,
        idle_timeout_s=idle_timeout,
        inputs=[str(p) for p in inputs],
        payload_inspected=evidence,
        part=ended.part,
        counters=eng.counters,
    )
    return Flows(a)


def flows_as_they_end(
    paths: PathLike | Sequence[PathLike],
    registry: CompiledRegistry | PathLike | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    *,
    evidence: bool = True,
    jobs: int | None = None,
) -> Iterator[Flows]:
    """Read captures and yield labelled flows in chunks as they end (``classifier.engine``): a day-long
    capture never holds more than the flows alive at once. ``jobs`` as ``classify``'s.

    >>> for chunk in classifier.flows_as_they_end("day.pcap"):  # doctest: +SKIP
    ...     chunk.to_pandas().to_parquet(...)
    """
    from .engine import Engine, Timeouts
    from .feed import batches, file_batches, two_processes
    from .pipeline import CHUNK_BYTES

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    reg = _registry(registry)
    eng = Engine(reg, Timeouts(idle_s=idle_timeout), evidence=evidence)

    def chunk(e: Any) -> Flows:
        return _flows_of(e, eng, reg, idle_timeout, evidence, e.stats, paths)

    source = file_batches(paths, CHUNK_BYTES)
    child, name = two_processes(paths, jobs), str(paths[0]) if paths else ""
    with batches(source, evidence=evidence, child=child, name=name) as items:
        for batch, tags in items:
            for e in eng.add(batch, tags):
                yield chunk(e)
    last = eng.flush()
    if len(last):
        yield chunk(last)


class Flows:
    """Labelled flows of one analysis: ``len()``, iteration (flat ECS dicts), tables, summary, filters.

    Rows are in start-time order. Column names are those of the CSV/Parquet output (``source.ip``,
    ``destination.port``, ``portclass.service``, ``portclass.flags`` ...); tables add ``raw.*``
    columns (exact nanosecond times, TCP flags, flag bits, key hash).

    >>> flows = classifier.classify("captures/sample.pcap")  # doctest: +SKIP
    >>> [r["portclass.service"] for r in flows][:3]  # doctest: +SKIP
    ['http', 'domain', None]
    """

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis

    # ---- the pieces underneath
    @property
    def registry(self) -> CompiledRegistry:
        """The compiled registry the labels come from."""
        return self.analysis.registry

    @property
    def table(self) -> FlowTable:
        """The NumPy flow columns (``classifier.flows.FlowTable``), in the analysis' row order."""
        return self.analysis.flows

    @property
    def labels(self) -> Labels:
        """The NumPy label columns, parallel to ``table``."""
        return self.analysis.labels

    @property
    def notice(self) -> str:
        """The IANA registry's warning (its own words): a registered port proves nothing about traffic."""
        from .report.terminal import notice_text

        return notice_text(self.analysis)

    # ---- rows
    def __len__(self) -> int:
        return len(self.analysis.flows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __repr__(self) -> str:
        a = self.analysis
        flagged = int(np.count_nonzero(a.labels.severity))
        sel = selection_of(a)
        kept = f" (filter kept {sel.kept} of {sel.total})" if sel else ""
        return f"<Flows: {len(self)} flows{kept}, {flagged} flagged; {a.registry.provenance.line()}>"

    def columns(self, raw: bool = False) -> dict[str, list[Any]]:
        """Column name -> Python values (flat ECS names; ``raw`` adds the ``raw.*`` columns)."""
        return self.to_arrow(raw=raw).to_pydict()

    def rows(self, nested: bool = False) -> list[dict[str, Any]]:
        """One dict per flow: flat ECS keys (as the CSV, None where no value), or ``nested`` ECS documents
        (as the JSON: a field without a value left out)."""
        if nested:
            from .report.rows import rows

            return rows(self.analysis, omit_nulls=True)
        from .report.rows import flow_columns

        cols = flow_columns(self.analysis)
        keys = list(cols)
        return [dict(zip(keys, values, strict=True)) for values in zip(*cols.values(), strict=True)]

    # ---- tables
    def to_arrow(self, raw: bool = True) -> Any:
        """A ``pyarrow.Table`` (types as the Parquet output; the warning in the schema metadata).

        >>> t = flows.to_arrow()  # doctest: +SKIP
        >>> t.schema.metadata[b"portclass.notice"][:40]  # doctest: +SKIP
        b'ASSIGNMENT OF A PORT NUMBER DOES NOT IN '
        """
        from .report.parquet import arrow_table

        return arrow_table(self.analysis, raw=raw)

    def to_pandas(self, raw: bool = True) -> Any:
        """A ``pandas.DataFrame`` of the flows; ``df.attrs["portclass"]`` holds the warning and provenance.

        >>> df = flows.to_pandas()  # doctest: +SKIP
        >>> df.groupby("portclass.service")["network.bytes"].sum()  # doctest: +SKIP
        """
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install 'portclass[notebook]'") from None
        table = self.to_arrow(raw=raw)
        df = table.to_pandas()
        df.attrs["portclass"] = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        return df

    # ---- summary and selection
    def summary(self, top: int = 10) -> dict[str, Any]:
        """Totals (of the whole capture, with what a filter kept), top services, flows per flag and verdict.

        ``verdicts`` counts the flows of each payload-evidence verdict (None when payloads were not
        inspected: ``evidence=False``).

        >>> flows.summary()["services"][0]  # doctest: +SKIP
        {'transport': 'tcp', 'port': 80, 'service': 'http', 'status': 'assigned', ...}
        >>> flows.summary()["verdicts"]  # doctest: +SKIP
        {'consistent': 9, 'mismatch': 3, 'unregistered': 0, 'unverified': 7}
        """
        from .report.summary import services, verdict_counts

        a = self.analysis
        by_flag = {name: int(np.count_nonzero(a.labels.flags & bit)) for bit, name in FLAG_NAMES.items()}
        verdicts = verdict_counts(a)
        tot = whole_totals(a)
        return {
            "notice": self.notice,
            "registry": a.registry.provenance.line(),
            "flows": len(self),
            "flagged": int(np.count_nonzero(a.labels.severity)),
            "totals": tot,
            "services": [asdict(s) for s in services(a)[:top]],
            "flags": {k: v for k, v in by_flag.items() if v},
            "verdicts": verdicts,
        }

    def filter(
        self,
        *,
        flagged_only: bool = False,
        flags: Sequence[str] = (),
        services: Sequence[str] = (),
        statuses: Sequence[str] = (),
        ports: Sequence[int] = (),
        hosts: Sequence[str] = (),
    ) -> Flows:
        """The flows a filter keeps (as the CLI's ``--flagged-only``, ``--flag``, ``--service`` ... options).

        Values of one argument are alternatives, different arguments must all hold.

        >>> flows.filter(ports=[53], hosts=["192.0.2.0/24"])  # doctest: +SKIP
        <Flows: 2 flows (filter kept 2 of 120), 0 flagged; IANA registry: ...>
        """
        flt = FlowFilter(
            flagged_only=flagged_only,
            flags=tuple(flags),
            services=tuple(services),
            statuses=tuple(statuses),
            ports=tuple(int(p) for p in ports),
            hosts=tuple(hosts),
        )
        return Flows(apply(self.analysis, flt))

    def write(self, path: PathLike, format: str = "parquet") -> None:
        """Write a report file (any ``portclass --format``: parquet, zeek, jsonl, json, csv ...), atomically.

        >>> flows.write("flows.parquet")  # doctest: +SKIP
        """
        from .report import write

        write(self.analysis, format, str(path), top=20)
