"""The ``portclass`` command: thin argument parsing over the pipeline and registry commands.

Exit codes: 0 done; 1 flagged flows found with ``--fail-on flagged``; 2 usage or input error
(unreadable capture or registry, bad arguments); 130/143 interrupted by SIGINT/SIGTERM (the rule
is in ``EPILOG`` and ``classifier.interrupt``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, interrupt
from .errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, PortclassError

EPILOG = """exit codes:
  0    done (also when the reader of stdout went away, as `| head` does)
  1    flagged flows found (only with --fail-on flagged)
  2    usage or input error: unreadable capture or registry, bad arguments
  70   internal error (a bug in portclass: one line; PORTCLASS_DEBUG=1 shows the traceback)
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM

interruption (every command and format): one line on stderr, no temporary file left. A signal
while captures are read or packets captured stops at the next batch and writes the report of what
was read, marked partial in its own format (JSON `partial: true`, CSV `# partial:`, Zeek
`#portclass_partial`, Parquet metadata, an HTML banner); at any other moment, or a second
signal, -o FILE stays as it was ("no report written").

A registered port does not prove the service, nor that the traffic is good: see the
registry's own warning at the top of every report."""


def common_options() -> argparse.ArgumentParser:
    """Options every sub-command accepts too (so ``--registry`` may follow the command)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--registry", metavar="FILE", default=argparse.SUPPRESS, help="registry file to use")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands: analyze (default), registry, live, archive)."""
    parser = argparse.ArgumentParser(
        prog="portclass",
        description="Label network flows with the services the IANA port registry assigns to their ports.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"portclass {__version__}")
    parser.add_argument(
        "--registry", metavar="FILE", help="registry file to use (default: $PORTCLASS_REGISTRY, imported, system)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from .commands import analyze as analyze_cmd
    from .commands import archive as archive_cmd
    from .commands import live as live_cmd
    from .commands import registry as reg_cmd

    analyze_cmd.add_parser(sub)
    reg_cmd.add_parser(sub)
    live_cmd.add_parser(sub)
    archive_cmd.add_parser(sub)
    return parser


_COMMANDS = {"analyze", "registry", "live", "archive"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except PortclassError as exc:
        interrupt.ending()
        print(f"portclass: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # raised where clean-up was needed (classifier.interrupt): output untouched
        return _interrupted(exc)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): not an error
        interrupt.stdout_closed()
        return EXIT_OK
    except SystemExit as exc:
        if exc.code == 1 and _rich_broken_pipe():
            return EXIT_OK
        raise
    except OSError as exc:  # an output file or directory that cannot be written, a vanished input
        interrupt.ending()
        where = exc.filename or "portclass"
        print(f"portclass: {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # a bug: still one line and a documented code, never a traceback by default
        import os

        if os.environ.get("PORTCLASS_DEBUG"):
            raise
        interrupt.ending()
        text = " ".join(str(exc).split())[:200]
        print(
            f"portclass: internal error: {type(exc).__name__}: {text} (a bug in portclass; "
            "PORTCLASS_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _dispatch(argv: list[str]) -> int:
    """Parse ``argv`` and run the command it names."""
    # `portclass [options] capture.pcap` means `portclass analyze [options] capture.pcap`.
    if argv and not any(a in _COMMANDS for a in argv) and not {"-h", "--help", "--version"} & set(argv):
        argv.insert(0, "analyze")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT
    if args.command == "registry":
        from .commands import registry as reg_cmd

        return reg_cmd.run(args)
    if args.command == "live":
        from .commands import live as live_cmd

        return live_cmd.run(args)
    if args.command == "archive":
        from .commands import archive as archive_cmd

        return archive_cmd.run(args)
    from .commands import analyze as analyze_cmd

    return analyze_cmd.run(args)


def _interrupted(exc: BaseException) -> int:
    """The one line for a run a signal ended before a report was written; its exit code."""
    interrupt.ending()  # a second signal must not cut this line short
    print(f"portclass: interrupted by {interrupt.signal_name()}; no report written", file=sys.stderr)
    return interrupt.exit_code(exc)


def _rich_broken_pipe() -> bool:
    """True when rich ended the run with its broken-pipe exit (stdout already pointed at /dev/null)."""
    import os
    import stat

    if "rich.console" not in sys.modules:
        return False
    try:
        out, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(out.st_mode) and out.st_rdev == null.st_rdev


def entry() -> None:
    """Console-script entry: signal handlers first (before any heavy import), then the command."""
    interrupt.install()
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        interrupt.stdout_closed()
        code = EXIT_OK
    except KeyboardInterrupt as exc:  # arrived while main was reporting another ending
        code = _interrupted(exc)
    interrupt.ending()  # the run is over: a signal now changes nothing (and prints no traceback)
    sys.exit(code)


if __name__ == "__main__":
    entry()
