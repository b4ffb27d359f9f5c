"""The `loligo` command: one entry point, one subcommand per area (`crush`, later `cluster`,
`status`, `osd`, `pool`, `rados`, `rbd`, `fs`, and the daemons).

Usage errors print one line and exit 2; errors of the work itself (a bad map, a missing rule)
print one line and exit 1. Nothing reaches the user as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

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
        bucket_cli,
        cluster_cli,
        config_cli,
        crush_cli,
        df_cli,
        fs_cli,
        gateway_cli,
        mgr_cli,
        mon_cli,
        osdmap_cli,
        pg_cli,
        rados_cli,
        tell_cli,
        user_cli,
    )
    from rados_py import config as config_mod

    parser = ArgumentParser(
        prog="loligo", description="Loligo: a Ceph-like storage system.",
        epilog="The cluster is the one --conf or --cluster-dir names, else $LOLIGO_CONF, else "
        f"the local cluster ({config_mod.DEFAULT_CONF}). `loligo COMMAND --help` says more.")
    parser.add_argument("--version", action="version", version="loligo 0.1.0")
    # before the subcommand, as `ceph -c FILE status`; SUPPRESS: the subcommands accept the
    # same options after their name, and neither default overwrites the other
    parser.add_argument("-c", "--conf", metavar="FILE", default=argparse.SUPPRESS,
                        help="the cluster's config file (default: $LOLIGO_CONF, else "
                        f"{config_mod.DEFAULT_CONF})")
    parser.add_argument("--cluster-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="the local cluster in DIR (its loligo.toml), as made by "
                        "`loligo cluster up --dir DIR`")
    parser.add_argument("-w", "--watch", action="store_true", default=argparse.SUPPRESS,
                        help="print the status, then cluster events as they happen (ceph -w)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    crush_sub = crush_cli.register(sub)
    mon_cli.register(sub)
    osdmap_cli.register(sub, crush_sub)
    pg_cli.register(sub)
    tell_sub = tell_cli.register(sub)
    rados_cli.register(sub)
    cluster_cli.register(sub)
    gateway_cli.register(sub)
    user_cli.register(sub)
    bucket_cli.register(sub)
    df_cli.register(sub)
    config_cli.register(sub)
    mgr_cli.register(sub)
    fs_cli.register(sub, tell_sub)
    return parser


def _where(args: argparse.Namespace) -> None:
    """`--cluster-dir DIR` means DIR's loligo.toml (and `--dir DIR` for `cluster ...`)."""
    directory = getattr(args, "cluster_dir", None)
    if directory is None:
        return
    conf = Path(directory).expanduser() / "loligo.toml"
    if getattr(args, "conf", None) and Path(args.conf).expanduser().absolute() != \
            conf.absolute():
        raise UsageError(f"loligo: --conf {args.conf} and --cluster-dir {directory} name two "
                         "clusters: give one")
    args.conf = str(conf)
    if getattr(args, "dir", None) is None:
        args.dir = directory


def main(argv: Sequence[str] | None = None) -> int:
    # SIGPIPE stays ignored (Python's default): a daemon run by this entry point must never die
    # because a peer closed its socket; `loligo ... | head` ends quietly below instead.
    memory.tune()  # `loligo rados put/get/bench` move big buffers too
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _where(args)
        if getattr(args, "command", None) is None:
            if getattr(args, "watch", False):  # `loligo -w`, as `ceph -w`
                from cluster import watch_cli

                return watch_cli.cmd_watch(args)
            raise UsageError("loligo: give a command, e.g. `loligo status` (see --help)")
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        return code
    except BrokenPipeError:
        # the reader went away (`loligo ... | head`): stop quietly, as any Unix tool does
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
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
