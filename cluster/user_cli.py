"""`loligo user|key`: gateway users and their S3/Swift keys, stored in RADOS (radosgw-admin's
`user create|info|ls|rm|suspend|enable` and `key create|rm`).

    loligo user create --uid U [--tenant T] [--display-name N] [--access-key K --secret-key S]
                       [--swift-user ACCOUNT:USER [--swift-key K] [--swift-access admin|member]]
    loligo user ls | info --uid U | rm --uid U | suspend --uid U | enable --uid U
    loligo key create --uid U [--access-key K --secret-key S] | key rm --access-key K
    loligo key create --uid U --swift-user ACCOUNT:USER [--swift-key K]
                      [--swift-access admin|member]

A Swift user is an admin of its account (the default) or a member, who gets only what the
containers' ACLs (X-Container-Read/Write) grant.

A user in a tenant (`--tenant T`, its id then `T$U` as radosgw-admin writes it) has the
tenant's own bucket namespace: two tenants may each have a bucket (or Swift container)
`photos`; others name it `T:photos`. Users without a tenant share the global namespace.

`--format json` prints users as radosgw-admin does (user_id, display_name, keys, swift_keys).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cluster.cli_common import add_command, common_options, emit, subparsers
from gateway.buckets import BucketStore
from gateway.pools import open_pools
from gateway.users import SWIFT_ACCESS, User, UserError, UserStore
from rados_py import config as config_mod
from rados_py.rados import Rados

T = TypeVar("T")


def _run(args: argparse.Namespace, work: Callable[[UserStore, BucketStore], Awaitable[T]]) -> T:
    cfg = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")
    if getattr(args, "timeout", None):
        cfg = cfg.replace(rpc_timeout=args.timeout)

    async def go() -> T:
        async with Rados(cfg) as rados:
            pools = await open_pools(rados, cfg.gateway_pool_prefix, cfg.gateway_pool_pg_num)
            return await work(UserStore(pools.users), BucketStore(pools))
    return asyncio.run(go())


def format_user(data: dict[str, Any]) -> str:
    lines = [f"user:         {data['user_id']}", f"display name: {data['display_name']}"]
    if data.get("suspended"):
        lines.append("suspended:    yes")
    for k in data["keys"]:
        lines.append(f"S3 key:       {k['access_key']}  secret {k['secret_key']}")
    for k in data["swift_keys"]:
        lines.append(f"Swift key:    {k['user']}  secret {k['secret_key']}  "
                     f"({k.get('access', 'admin')})")
    return "\n".join(lines)


def _uid(args: argparse.Namespace) -> str:
    """--uid, in --tenant if given (radosgw-admin's `tenant$uid`)."""
    tenant = getattr(args, "tenant", None)
    return f"{tenant}${args.uid}" if tenant and "$" not in args.uid else args.uid


def _show(args: argparse.Namespace, user: User) -> int:
    return emit(args, user.to_json(), format_user)


def cmd_create(args: argparse.Namespace) -> int:
    if args.secret_key and not args.access_key:
        args.parser.error("--secret-key needs --access-key")
    if (args.swift_key or args.swift_access) and not args.swift_user:
        args.parser.error("--swift-key and --swift-access need --swift-user")
    user = _run(args, lambda users, _: users.create(
        _uid(args), args.display_name or "", access_key=args.access_key,
        secret_key=args.secret_key, swift_user=args.swift_user, swift_key=args.swift_key,
        email=args.email or "", swift_access=args.swift_access or "admin"))
    return _show(args, user)


def cmd_info(args: argparse.Namespace) -> int:
    return _show(args, _run(args, lambda users, _: users.get(_uid(args))))


def cmd_ls(args: argparse.Namespace) -> int:
    uids = _run(args, lambda users, _: users.ids())
    return emit(args, uids, lambda d: "\n".join(d))


def cmd_rm(args: argparse.Namespace) -> int:
    uid = _uid(args)

    async def work(users: UserStore, buckets: BucketStore) -> None:
        await users.get(uid)
        owned = await buckets.list_for(uid)
        if owned:
            raise UserError(f"user {uid!r} owns {len(owned)} bucket(s) "
                            f"({', '.join(n for n, _ in owned[:3])}...): delete them first")
        await users.remove(uid)
    _run(args, work)
    print(f"removed user {uid}")
    return 0


def cmd_suspend(args: argparse.Namespace) -> int:
    on = args.user_command == "suspend"
    return _show(args, _run(args, lambda users, _: users.set_suspended(_uid(args), on)))


def cmd_key_create(args: argparse.Namespace) -> int:
    swift = args.swift_user or args.swift_key or args.swift_access or args.key_type == "swift"
    if swift:
        if args.swift_key and args.secret_key:
            args.parser.error("give the Swift key once: --swift-key (or --secret-key)")
        return _show(args, _run(args, lambda users, _: users.add_swift_key(
            _uid(args), args.swift_user, args.swift_key or args.secret_key,
            args.swift_access or "admin")))
    return _show(args, _run(args, lambda users, _: users.add_key(
        _uid(args), args.access_key, args.secret_key)))


def cmd_key_rm(args: argparse.Namespace) -> int:
    return _show(args, _run(args, lambda users, _: users.remove_key(args.access_key)))


def register(sub: Any) -> None:
    common = common_options()
    user = sub.add_parser("user", help="gateway users: create, ls, info, rm, suspend, enable",
                          description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    usub = subparsers(user, "user_command")
    p = add_command(usub, "create", cmd_create, "create a user with an S3 key pair", common,
                    fmt=True)
    p.add_argument("--uid", required=True)
    p.add_argument("--tenant", help="the user's tenant: its own bucket namespace")
    p.add_argument("--display-name")
    p.add_argument("--email")
    p.add_argument("--access-key", help="choose the access key (default: generated)")
    p.add_argument("--secret-key", help="choose the secret key (default: generated)")
    p.add_argument("--swift-user", metavar="ACCOUNT:USER", help="also a Swift user")
    p.add_argument("--swift-key", help="the Swift user's key (default: generated)")
    p.add_argument("--swift-access", choices=SWIFT_ACCESS,
                   help="admin of the account (default) or member (container ACLs only)")
    add_command(usub, "ls", cmd_ls, "list user ids", common, fmt=True)
    for name, func, what in (("info", cmd_info, "show a user and its keys"),
                             ("rm", cmd_rm, "remove a user that owns no bucket"),
                             ("suspend", cmd_suspend, "refuse the user's requests"),
                             ("enable", cmd_suspend, "accept a suspended user's requests")):
        p = add_command(usub, name, func, what, common, fmt=True)
        p.add_argument("--uid", required=True)
        p.add_argument("--tenant")

    key = sub.add_parser("key", help="S3 and Swift keys of gateway users: create, rm")
    ksub = subparsers(key, "key_command")
    p = add_command(ksub, "create", cmd_key_create, "add a key to a user", common, fmt=True)
    p.add_argument("--uid", required=True)
    p.add_argument("--tenant")
    p.add_argument("--key-type", choices=["s3", "swift"], default="s3")
    p.add_argument("--access-key")
    p.add_argument("--secret-key")
    p.add_argument("--swift-user", metavar="ACCOUNT:USER", help="a Swift key for this user "
                   "(default with --key-type swift: UID:swift)")
    p.add_argument("--swift-key", help="the Swift user's key (default: generated)")
    p.add_argument("--swift-access", choices=SWIFT_ACCESS,
                   help="admin of the account (default) or member (container ACLs only)")
    p = add_command(ksub, "rm", cmd_key_rm, "remove an S3 key", common, fmt=True)
    p.add_argument("--access-key", required=True)
