"""`loligo tell osd.N|osd.* config set KEY VALUE`: change an option in running OSDs at once, as
`ceph tell osd.* config set` does (recovery throttles, scrub schedule). Not persisted: put it in
the config file too for it to survive a restart."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from cluster.cli_common import add_command as command
from cluster.cli_common import common_options, subparsers
from rados_py import config as config_mod
from rados_py import rpc
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc
from rados_py.rados import Rados

__all__ = ["register"]


def _target(which: str) -> str:
    """The id part of osd.N or osd.* (checked before anything else is)."""
    kind, _, ident = which.partition(".")
    if kind != "osd" or not ident:
        raise InvalidArgument(f"tell {which!r}: name OSDs as osd.N or osd.*")
    return ident


def _targets(which: str, osds: dict[int, Any]) -> list[int]:
    ident = _target(which)
    if ident == "*":
        return sorted(o for o, s in osds.items() if s.up)
    if not ident.isdigit() or int(ident) not in osds:
        raise InvalidArgument(f"no {which} in the osdmap")
    return [int(ident)]


def cmd_config_set(args: argparse.Namespace) -> int:
    _target(args.target)
    config_mod.option(args.key, f"tell {args.target} config set")  # "unknown option", at once

    async def go() -> int:
        conf = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)),
                               "client.admin")
        failed = 0
        async with Rados(conf) as r:
            await r.connect()
            for osd in _targets(args.target, r.osdmap.osds):
                state = r.osdmap.osds[osd]
                channel = rpc.open_channel(state.addr, conf, r._creds)
                try:
                    reply = await osd_pb2_grpc.OsdStub(channel).ConfigSet(
                        osd_pb2.ConfigSetRequest(key=args.key, value=args.value),
                        timeout=conf.rpc_timeout)
                    print(f"osd.{osd}: {reply.key} = {reply.value} (was {reply.old})")
                except grpc.aio.AioRpcError as exc:
                    error: LoligoError = rpc.from_grpc_error(exc, f"osd.{osd}")
                    if args.target != "osd.*":
                        raise error from None
                    print(f"osd.{osd}: {error}")
                    failed += 1
                finally:
                    await channel.close()
        return 1 if failed else 0
    return asyncio.run(go())


def register(sub: Any) -> Any:
    """Add `tell`; its subcommand parsers, for other areas to add theirs (mds.X client)."""
    common = common_options()
    tell = sub.add_parser("tell", help="talk to running daemons: osd.N|osd.* config set, "
                          "mds.X client ls|evict")
    tell.add_argument("target", metavar="osd.N|osd.*|mds.X")
    tsub = subparsers(tell, "tell_command")
    config = tsub.add_parser("config", help="options")
    csub = subparsers(config, "config_command")
    p = command(csub, "set", cmd_config_set, "set an option at once (not persisted)", common)
    p.add_argument("key")
    p.add_argument("value")
    return tsub
