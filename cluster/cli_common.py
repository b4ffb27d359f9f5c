"""What every cluster command shares: finding the cluster, one client, output in text or JSON,
and the argument-parsing helpers that keep usage errors to one line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rados_py import config as config_mod
from rados_py.auth import Keyring
from rados_py.monclient import MonClientSync


@contextmanager
def mon_client(args: argparse.Namespace) -> Iterator[MonClientSync]:
    """A client of the cluster the command line names, acting as client.admin."""
    cfg = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")
    if getattr(args, "timeout", None):
        cfg = cfg.replace(rpc_timeout=args.timeout)
    with MonClientSync(cfg, Keyring.load(cfg.keyring)) as client:
        yield client


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], str]) -> int:
    """Print `data` as --format asks: JSON as is, or text rendered from the same dict."""
    fmt = getattr(args, "format", "text")
    if fmt == "json":
        print(json.dumps(data))
    elif fmt == "json-pretty":
        print(json.dumps(data, indent=4))
    else:
        print(render(data))
    return 0


def run_command(args: argparse.Namespace, **command: Any) -> int:
    """Run one monitor command and print its one-line answer."""
    with mon_client(args) as client:
        result = client.command(**command)
    print(result.message)
    return 0


def common_options() -> argparse.ArgumentParser:
    """--conf and --timeout, accepted before or after any subcommand (SUPPRESS: a subparser's
    default never overwrites a value given earlier on the line)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-c", "--conf", default=argparse.SUPPRESS, metavar="FILE",
                   help="cluster config (default: $LOLIGO_CONF, else "
                   f"{config_mod.DEFAULT_CONF})")
    p.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                   help="give up after this long (default: rpc_timeout from the config)")
    return p


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=["text", "json", "json-pretty"],
                   default="text", help="output format (default text)")


def add_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help_: str,
                common: argparse.ArgumentParser, fmt: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_, parents=[common])
    # the parser's own error(): a usage error (exit 2) whichever module runs as __main__
    p.set_defaults(func=func, parser=p)
    if fmt:
        add_format(p)
    return p


def subparsers(p: argparse.ArgumentParser, dest: str, required: bool = True) -> Any:
    sub = p.add_subparsers(dest=dest, metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = required
    return sub
