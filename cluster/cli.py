"""The `loligo` command: one entry point, one subcommand per area (`crush`, later `cluster`,
`status`, `osd`, `pool`, `rados`, `rbd`, `fs`, and the daemons).

Usage errors print one line and exit 2; errors of the work itself (a bad map, a missing rule)
print one line and exit 1. Nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from rados_py import memory
from rados_py.errors import LoligoError

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line, reported in one line with exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and `--help` still shows everything)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> ArgumentParser:
    from cluster import (
        cluster_cli,
        crush_cli,
        gateway_cli,
        mon_cli,
        osdmap_cli,
        pg_cli,
        rados_cli,
        tell_cli,
        user_cli,
    )

    parser = ArgumentParser(prog="loligo", description="Loligo: a Ceph-like storage system.")
    parser.add_argument("--version", action="version", version="loligo 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    crush_sub = crush_cli.register(sub)
    mon_cli.register(sub)
    osdmap_cli.register(sub, crush_sub)
    pg_cli.register(sub)
    tell_cli.register(sub)
    rados_cli.register(sub)
    cluster_cli.register(sub)
    gateway_cli.register(sub)
    user_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A closed pipe (`loligo ... | head`) ends the command quietly, as for any Unix tool.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    memory.tune()  # `loligo rados put/get/bench` move big buffers too
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    except LoligoError as e:
        print(f"loligo: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"loligo: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
