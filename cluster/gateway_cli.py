"""`loligo gateway`: run the S3 gateway daemon in the foreground.

    loligo gateway --conf FILE --id N       (also: loligo gateway run --conf FILE --id N)
"""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli_common import add_command, common_options
from rados_py import config as config_mod


def cmd_gateway(args: argparse.Namespace) -> int:
    if not getattr(args, "id", None):
        args.parser.error("give --id N (the gateway's id, as in its [gateway.N] section)")
    from gateway import daemon  # the daemon and its dependencies only when running one

    return int(daemon.main(str(config_mod.find_conf(getattr(args, "conf", None))), args.id))


def register(sub: Any) -> None:
    common = common_options()
    p = add_command(sub, "gateway", cmd_gateway, "run an S3 gateway: gateway --conf FILE --id N",
                    common)
    p.add_argument("action", nargs="?", choices=["run"], help="optional: run (the default)")
    p.add_argument("--id", metavar="N", help="the gateway's id, e.g. 1")
