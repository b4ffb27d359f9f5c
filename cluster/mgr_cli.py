"""`loligo mgr` and `loligo dashboard`: the manager daemon and where its dashboard is.

    loligo mgr --conf FILE --id a      run the manager (the dashboard) in the foreground
    loligo dashboard [--format json]   the dashboard's address, and how to sign in to act
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from typing import Any

from cluster.cli_common import add_command, common_options, emit
from rados_py import config as config_mod
from rados_py.errors import NotFound

__all__ = ["register"]


def cmd_mgr(args: argparse.Namespace) -> int:
    if not getattr(args, "id", None):
        args.parser.error("give --id X (the manager's id, as in its [mgr.X] section)")
    from mgr import daemon  # the daemon and its dependencies only when running one

    return int(daemon.main(str(config_mod.find_conf(getattr(args, "conf", None))), args.id))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/state", timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Like `ceph mgr services`: the dashboard's URL (from the [mgr.X] sections)."""
    from cluster import launcher

    conf = config_mod.find_conf(getattr(args, "conf", None))
    cluster = launcher.LocalCluster(conf)
    mgrs = cluster.mgrs
    if not mgrs:
        raise NotFound(f"no manager in {conf}: `loligo cluster up` adds one ([mgr.a])")
    found = []
    for d in mgrs:
        mconf = config_mod.load(conf, d.name)
        url = f"http://{mconf.mgr_dashboard_host}:{mconf.mgr_dashboard_port}/"
        found.append({"name": d.name, "url": url, "answering": _answers(url)})
    data = {"dashboard": found[0]["url"], "managers": found,
            "sign_in": {"entity": "client.admin", "keyring": str(cluster.config.keyring)}}

    def render(d: dict[str, Any]) -> str:
        lines = [f"{m['url']}  ({m['name']}, "
                 + ("answering" if m["answering"] else
                    f"not answering: loligo cluster start {m['name']}") + ")"
                 for m in d["managers"]]
        lines.append(f"Read-only until you sign in: entity client.admin, its key from "
                     f"{d['sign_in']['keyring']}")
        return "\n".join(lines)
    return emit(args, data, render)


def register(sub: Any) -> None:
    common = common_options()
    p = add_command(sub, "mgr", cmd_mgr, "run the manager (the dashboard): mgr --conf FILE "
                    "--id a", common)
    p.add_argument("--id", metavar="X", help="the manager's id, e.g. a")
    add_command(sub, "dashboard", cmd_dashboard, "where the live dashboard is (ceph mgr "
                "services)", common, fmt=True)
