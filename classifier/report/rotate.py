"""A flow log for a sensor: ended flows appended as they end, the file rotated at fixed intervals.

``FlowLog`` writes JSON Lines, CSV, Zeek conn.log or Parquet with the streaming writers of
``report.stream`` (``_Body``, ``_head``, ``_tail``).  Text formats: the head when the file opens,
each chunk of ended flows as whole lines in one ``write()`` (a reader following the file, ``tail -F``
or Filebeat, never sees half a line), a closing line with the file's own totals when it closes.
Parquet: row groups into a hidden temporary name beside the file, renamed when the file is closed
(a Parquet file is only readable once its footer is written).

With ``rotate_s`` the output is a directory: the current file ``conn.jsonl`` (``conn.log``,
``conn.csv``, ``conn.parquet``) is closed at each multiple of the interval (UTC, as Zeek aligns its
rotation) and renamed, atomically, to ``conn.<opened>_<closed>.<ext>`` (times UTC,
``YYYY-MM-DD-HH-MM-SS``); a new current file is opened.  Writing errors (disk full, directory gone)
raise ``PortclassError`` naming the file; a partly written chunk is cut off again, so the file keeps
whole lines only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import io
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine import Ended
from ..errors import PortclassError
from ..pipeline import Analysis
from .aggregates import Totaling
from .stream import STREAMED, _Body, _chunk, _head, _tail

EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "zeek": "log", "parquet": "parquet"}
"""File name extension of each streamed format (``conn.<ext>``, as Zeek names its conn.log)."""

STAMP = "%Y-%m-%d-%H-%M-%S"
"""Time format of a rotated file's span (UTC): ``conn.2026-11-27-14-00-00_2026-11-27-15-00-00.log``."""

WRITE_ROWS = 4096
"""Flows serialized at a time: a sensor's memory should not jump with a large pass of ended flows."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """``1h``, ``10m``, ``30s``, ``1d`` or plain seconds (``90``, ``1.5h``) as seconds; ValueError otherwise.

    >>> parse_interval("1h"), parse_interval("10m"), parse_interval("30"), parse_interval("1.5s")
    (3600.0, 600.0, 30.0, 1.5)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 1h, 10m, 30s)")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if value <= 0:
        raise ValueError(f"a duration must be more than 0: {text!r}")
    return value


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime(STAMP)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FlowLog:
    """Ended flows to a file (or stdout) as they end; with ``rotate_s`` to a directory of rotated files.

    ``base`` is the run's analysis without flows (registry, inputs, timeouts) the heads are made of;
    ``meta`` gives the capture's description (``portclass.live``) for heads and closing lines.

    >>> log = FlowLog("jsonl", "flows", base, rotate_s=3600)  # doctest: +SKIP
    >>> log.open(); log.write(ended); log.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        fmt: str,
        out: str | Path | None,
        base: Analysis,
        *,
        rotate_s: float | None = None,
        meta: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fmt not in STREAMED:
            raise ValueError(f"not a streamed format: {fmt!r}")
        self.fmt, self.base, self.rotate_s = fmt, base, rotate_s
        self.meta = meta or dict
        self.clock = clock
        self.to_stdout = out is None or str(out) == "-"
        self.dir = Path(out) if rotate_s else None
        self.path: Path | None = None if self.to_stdout else Path(out)  # type: ignore[arg-type]
        if self.dir is not None:
            self.path = self.dir / f"conn.{EXTENSIONS[fmt]}"
        self.finished: list[Path] = []  # rotated (closed) files, oldest first
        self.running = Totaling()  # every flow written, all files
        self.file_running = Totaling()  # the flows of the current file
        self.opened_at = 0.0
        self.next_rotation: float | None = None
        self._fd: int | None = None
        self._body: _Body | None = None
        self._pq_file: Any = None
        self._pq_tmp: Path | None = None
        self._started = False

    # ---------------------------------------------------------------- files

    @property
    def current(self) -> Path | None:
        """The file being written (its final name)."""
        return self.path

    def open(self) -> None:
        """Open the current file (creating the directory for rotation) and write its head."""
        now = self.clock()
        self.opened_at = now
        self.file_running = Totaling()
        if self.rotate_s:
            self.next_rotation = (now // self.rotate_s + 1) * self.rotate_s
        if self.dir is not None and not self._started:  # made once: a directory removed later is an error
            self._guard(lambda: self.dir.mkdir(parents=True, exist_ok=True), self.dir)  # type: ignore[union-attr]
            self._keep_leftover()
        self._started = True
        if self.fmt == "parquet":
            self._open_parquet()
            return
        if self.to_stdout:
            self._fd = 1
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            self._fd = self._guard(lambda: os.open(self.path, flags, 0o644), self.path)  # type: ignore[arg-type]
        self._body = _Body(self.fmt, io.BytesIO())
        self._append(self._head())

    def _keep_leftover(self) -> None:
        """A current file left by a sensor that could not close it (SIGKILL, power loss) is kept aside as
        ``conn.unclosed-<its last change, UTC>.<ext>`` rather than overwritten."""
        assert self.path is not None and self.dir is not None
        if self.fmt == "parquet" or not self.path.exists():  # a Parquet file without its footer is unreadable
            return
        stamp = _stamp(self.path.stat().st_mtime)
        name, k = self.dir / f"conn.unclosed-{stamp}.{EXTENSIONS[self.fmt]}", 1
        while name.exists():
            k += 1
            name = self.dir / f"conn.unclosed-{stamp}-{k}.{EXTENSIONS[self.fmt]}"
        self._guard(lambda: os.rename(self.path, name), name)  # type: ignore[arg-type]

    def _open_parquet(self) -> None:
        if self.to_stdout:  # a pipe: row groups straight into it, the footer at the end
            import sys

            self._pq_file = sys.stdout.buffer
        else:
            assert self.path is not None
            self._pq_tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            self._pq_file = self._guard(lambda: open(self._pq_tmp, "wb"), self.path)  # type: ignore[arg-type]
        self._body = _Body("parquet", self._pq_file)

    def due(self, now: float | None = None) -> bool:
        """Whether the current file's interval is over."""
        return self.next_rotation is not None and (self.clock() if now is None else now) >= self.next_rotation

    def rotate(self) -> Path | None:
        """Close the current file under its time span's name and open the next one; the closed file's name."""
        done = self._close_current(partial=False)
        self.open()
        return done

    def close(self, partial: bool = False, meta: dict[str, Any] | None = None) -> Path | None:
        """Close the current file (``partial``: the capture was stopped by a signal); its final name.

        ``meta``: the capture's final description for the closing line (default: ``meta()``).
        """
        if meta is not None:
            self.meta = lambda: meta
        return self._close_current(partial)

    def _close_current(self, partial: bool) -> Path | None:
        if self._body is None:
            return None
        body, self._body = self._body, None
        closed_at = self.clock()
        if self.fmt == "parquet":
            self._finish_parquet(body, partial)
        else:
            self._append(self._closing_text(partial, closed_at))
            if self._fd is not None and self._fd != 1:
                fd, self._fd = self._fd, None
                self._guard(lambda: os.fsync(fd), self.path)  # type: ignore[arg-type]
                os.close(fd)
        if self.to_stdout:
            return None
        final = self._final_name(closed_at)
        src = self._pq_tmp if self.fmt == "parquet" else self.path
        assert src is not None
        if final != src:
            self._guard(lambda: os.rename(src, final), final)
        self._pq_tmp = None
        if self.dir is not None:
            self.finished.append(final)
        return final

    def _final_name(self, closed_at: float) -> Path:
        """The closed file's name: the same (``-o FILE``), or with its time span (rotation)."""
        assert self.path is not None
        if self.dir is None:
            return self.path
        stem = f"conn.{_stamp(self.opened_at)}_{_stamp(closed_at)}"
        ext = EXTENSIONS[self.fmt]
        name, k = self.dir / f"{stem}.{ext}", 1
        while name.exists():  # two files closed within one second (a stop right after a rotation)
            k += 1
            name = self.dir / f"{stem}-{k}.{ext}"
        return name

    def _finish_parquet(self, body: _Body, partial: bool) -> None:
        from .parquet import metadata

        meta = {**metadata(self._file_analysis(partial)), "live": json.dumps(self._file_meta(partial))}
        try:
            if body.parquet is None:  # no flow in this file: an empty table with the same columns
                from .parquet import render

                self._pq_file.write(render(self._file_analysis(partial)))
            else:
                body.parquet.add_key_value_metadata({**meta, "pandas": body.pandas.decode()})
                body.parquet.close()
            self._pq_file.flush()
            if self._pq_tmp is not None:
                os.fsync(self._pq_file.fileno())
                self._pq_file.close()
        except OSError as exc:
            self._drop_parquet()
            raise self._error(exc, self.path) from None

    def _drop_parquet(self) -> None:
        """Give up the current Parquet file (it cannot be completed): its temporary name goes."""
        if self._pq_tmp is not None:
            with contextlib.suppress(OSError):
                self._pq_file.close()
            with contextlib.suppress(OSError):
                self._pq_tmp.unlink()
            self._pq_tmp = None

    def abandon(self) -> None:
        """After a writing error: leave what is whole, close descriptors, remove a half Parquet file."""
        self._body = None
        if self._fd is not None and self._fd != 1:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._drop_parquet()

    # ---------------------------------------------------------------- flows

    def write(self, e: Ended) -> None:
        """Append the flows of one chunk (one write of whole lines; a row group for Parquet)."""
        if not len(e) or self._body is None:
            return
        c = _chunk(e, self.base)
        if self.fmt == "parquet":
            try:
                if self._pq_tmp is not None:
                    _still_linked(self._pq_file.fileno())
                self._body.add(c)  # row groups of the writer's size
                self._pq_file.flush()
            except OSError as exc:
                self._drop_parquet()
                self._body = None
                raise self._error(exc, self.path) from None
        else:
            sink = self._body.sink
            sink.seek(0)
            sink.truncate()
            self._body.add(c, rows=WRITE_ROWS)
            self._append(sink.getvalue())
        self.running.add(e)
        self.file_running.add(e)

    def _append(self, data: bytes) -> None:
        """``data`` to the file in one ``write``; on failure the file is cut back to where it was."""
        if not data or self._fd is None:
            return
        fd = self._fd
        start = None if fd == 1 else os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            if start is not None:
                _still_linked(fd)
            while view:
                n = os.write(fd, view)
                if n == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
        except OSError as exc:
            if start is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
            raise self._error(exc, self.path) from None

    # ---------------------------------------------------------------- heads and closing lines

    def _file_analysis(self, partial: bool) -> Analysis:
        a = dataclasses.replace(self.base, interrupted=partial)
        a.running = self.file_running.totals(a)  # type: ignore[attr-defined]
        return a

    def _file_meta(self, partial: bool) -> dict[str, Any]:
        r = self.file_running
        return {
            **self.meta(),
            "file": {
                "opened": _iso(self.opened_at),
                "closed": _iso(self.clock()),
                "flows": r.flows,
                "packets": r.packets,
                "bytes": r.bytes,
                "flagged": r.flagged,
            },
            "partial": partial,
        }

    def _head(self) -> bytes:
        a = self.base
        text = _head(a, self.fmt).decode()
        if self.fmt == "jsonl":
            doc = json.loads(text.splitlines()[0])
            pc = doc["portclass"]
            for k in ("totals", "partial", "interrupted_by"):  # known when the file closes: its last line
                pc.pop(k, None)
            pc["live"] = {**self.meta(), "file": {"opened": _iso(self.opened_at)}}
            return (json.dumps(doc, ensure_ascii=False) + "\n").encode()
        if self.fmt == "csv":
            *comments, header = text.splitlines(keepends=True)
            live = {**self.meta(), "file": {"opened": _iso(self.opened_at)}}
            return "".join([*comments, f"# live capture: {json.dumps(live, ensure_ascii=False)}\n", header]).encode()
        return text.encode()

    def _closing_text(self, partial: bool, closed_at: float) -> bytes:
        """The file's last line(s): its own totals and the capture's state (``portclass.close``)."""
        from ..interrupt import partial_fields, partial_note

        meta = self._file_meta(partial)
        a = self._file_analysis(partial)
        note = partial_note(a)
        if self.fmt == "jsonl":
            doc = {
                "@timestamp": _iso(closed_at),
                "event": {"kind": "state", "dataset": "portclass.close"},
                "message": "end of this file: " + json.dumps(meta["file"]),
                "portclass": {"live": meta, **partial_fields(a)},
            }
            return (json.dumps(doc, ensure_ascii=False) + "\n").encode()
        if self.fmt == "csv":
            text = f"# close: {json.dumps(meta, ensure_ascii=False)}\n" + (f"# {note}\n" if note else "")
            return text.encode()
        from .zeek import SEPARATOR

        text = f"#portclass_close{SEPARATOR}{json.dumps(meta, ensure_ascii=False)}\n"
        if note:
            text += f"#portclass_partial{SEPARATOR}{note}\n"
        return text.encode() + _tail("zeek")

    # ---------------------------------------------------------------- errors

    def _guard(self, action: Callable[[], Any], path: Path) -> Any:
        try:
            return action()
        except OSError as exc:
            raise self._error(exc, path) from None

    @staticmethod
    def _error(exc: OSError, path: Path | None) -> PortclassError:
        why = exc.strerror or str(exc)
        return PortclassError(f"cannot write the flow log ({why}); the capture stopped", path=str(path or "-"))


def _still_linked(fd: int) -> None:
    """ENOENT when the open file was removed (its directory deleted): writing on would lose the flows."""
    if os.fstat(fd).st_nlink == 0:
        raise OSError(errno.ENOENT, "the file or its directory was removed")
