"""`loligo config help [OPTION] [--daemon TYPE]`: every option of the one schema (or one), with
its type, default, bounds, who reads it and what it does (as `ceph config help`)."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli_common import subparsers
from rados_py import config as config_mod

__all__ = ["register"]


def cmd_help(args: argparse.Namespace) -> int:
    if args.option:
        opt = config_mod.option(args.option, "config help")
        text = config_mod.describe()
        lines = text.splitlines()
        i = next(n for n, line in enumerate(lines) if line.startswith(opt.name + " ("))
        print(lines[i])
        print(lines[i + 1])
        return 0
    print(config_mod.describe(args.daemon))
    return 0


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="configuration options: help")
    csub = subparsers(config, "config_command")
    p = csub.add_parser("help", help="what an option means, its type, default and bounds")
    p.add_argument("option", nargs="?", help="one option (default: all)")
    p.add_argument("--daemon", choices=config_mod.DAEMON_TYPES,
                   help="only the options this daemon type reads")
    p.set_defaults(func=cmd_help)
