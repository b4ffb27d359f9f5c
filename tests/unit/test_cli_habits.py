"""Ceph's habits in `loligo`: the global -c/--conf and --cluster-dir, `df`, the events `-w`
prints, a closed pipe, "unknown option", one wording for a missing pool."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import cli, df_cli
from mgr.events import health_events, osdmap_events
from rados_py.proto.loligo import mon_pb2
from tests.unit.test_mon_cli import MAPS

GIB = 1 << 30
ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str):
    args = cli.build_parser().parse_args(argv)
    cli._where(args)
    return args


def test_conf_and_cluster_dir_before_the_subcommand(tmp_path: Path) -> None:
    assert parse("-c", "/x/l.toml", "status").conf == "/x/l.toml"
    assert parse("--conf", "/x/l.toml", "osd", "tree").conf == "/x/l.toml"
    assert parse("status", "-c", "/y.toml").conf == "/y.toml"  # after it still works
    args = parse("--cluster-dir", str(tmp_path), "status")
    assert args.conf == str(tmp_path / "loligo.toml")
    args = parse("--cluster-dir", str(tmp_path), "cluster", "info")
    assert args.dir == str(tmp_path)
    with pytest.raises(cli.UsageError, match="name two clusters"):
        parse("--cluster-dir", str(tmp_path), "-c", "/elsewhere.toml", "status")
    assert parse("-w").watch and parse("status", "--watch").watch
    help_text = cli.build_parser().format_help()
    assert "--conf FILE" in help_text and "--cluster-dir DIR" in help_text


def test_a_closed_pipe_ends_a_command_quietly() -> None:
    """`loligo ... | head -1`: no traceback, no BrokenPipeError message."""
    proc = subprocess.run(f"{sys.executable} -m cluster crush --help | head -1", shell=True,
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.startswith("usage:") and "Error" not in proc.stderr, proc.stderr


def test_tell_refuses_an_unknown_option_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--conf", "/nonexistent.toml", "tell", "osd.*", "config", "set",
                     "osd_recovery_max_actve", "3"])
    err = capsys.readouterr().err
    assert code == 1
    assert "unknown option 'osd_recovery_max_actve' (did you mean 'osd_recovery_max_active'" in err


def _usage(osd: int, used: int, fs_id: str = "h1:2049", size: int = 0) -> mon_pb2.OsdUsage:
    fs_total, fs_avail = 252 * GIB, 200 * GIB
    total = size or fs_total
    return mon_pb2.OsdUsage(used_bytes=used, total_bytes=total,
                            avail_bytes=min(total - used, fs_avail), fs_id=fs_id,
                            fs_total_bytes=fs_total, fs_avail_bytes=fs_avail)


def test_df_counts_a_shared_disk_once_and_limits_pools_by_it() -> None:
    osdmap = MAPS.osdmap  # osd.0..2, pool rbd (id 1, size 2, 16 PGs)
    pgs = mon_pb2.PgSummary()
    for osd in osdmap.osds:
        pgs.osd_usage[osd].CopyFrom(_usage(osd, GIB))
    pgs.pgs.add(pgid="1.0", state="active+clean", num_objects=10, num_bytes=10 << 20)
    pgs.pgs.add(pgid="1.1", state="active+clean", num_objects=5, num_bytes=5 << 20)
    data = df_cli.df_json(osdmap, pgs)
    assert data["stats"]["total_bytes"] == 252 * GIB  # one disk under three OSDs
    assert data["stats"]["total_avail_bytes"] == 200 * GIB
    assert data["stats"]["total_used_bytes"] == 3 * GIB
    rbd = data["pools"][0]
    assert rbd["name"] == "rbd" and rbd["stats"]["objects"] == 15
    assert rbd["stats"]["stored"] == 15 << 20 and rbd["stats"]["bytes_used"] == 30 << 20
    # two copies of everything on one disk with 200 GiB free: at most 100 GiB more
    assert rbd["stats"]["max_avail"] == 100 * GIB
    text = df_cli.format_df(data)
    assert text.splitlines()[0] == "--- RAW STORAGE ---"
    assert "TOTAL  252.0 GiB  200.0 GiB  3.0 GiB   3.0 GiB       1.19" in text
    detail = df_cli.format_df(df_cli.df_json(osdmap, pgs, detail=True))
    assert "h1:2049" in detail and "osd.0 (1.0 GiB used)" in detail
    assert "2 active+clean" in detail


def test_df_with_a_size_per_osd() -> None:
    osdmap = MAPS.osdmap
    pgs = mon_pb2.PgSummary()
    for osd in osdmap.osds:
        pgs.osd_usage[osd].CopyFrom(_usage(osd, GIB, size=10 * GIB))
    data = df_cli.df_json(osdmap, pgs)
    assert data["stats"]["total_bytes"] == 30 * GIB
    assert data["stats"]["total_avail_bytes"] == 27 * GIB


def test_events_of_an_osd_going_down_and_health_changing() -> None:
    old = MAPS.osdmap
    down = old.replace(osds={**old.osds, 0: dataclasses.replace(old.osds[0], up=False)},
                       flags=old.flags - {"noout"})
    events = [(e.severity, e.message) for e in osdmap_events(old, down)]
    assert ("WRN", "osd.0 marked down") in events
    assert ("INF", "noout flag unset") in events
    back = down.replace(osds={**down.osds, 0: dataclasses.replace(down.osds[0], up=True,
                                                                  up_from=down.epoch + 1)})
    assert any(m.startswith("osd.0 boot") for _, m in
               ((e.severity, e.message) for e in osdmap_events(down, back)))
    assert osdmap_events(None, old) == [] and osdmap_events(old, old) == []

    def check(summary: str) -> dict:
        return {"severity": "HEALTH_WARN", "summary": {"message": summary}}
    failed = health_events({}, "HEALTH_OK", {"OSD_DOWN": check("1 osds down: osd.0")},
                           "HEALTH_WARN")
    assert [(e.severity, e.message) for e in failed] == [
        ("WRN", "Health check failed: 1 osds down: osd.0 (OSD_DOWN)")]
    cleared = health_events({"OSD_DOWN": check("1 osds down: osd.0")}, "HEALTH_WARN", {},
                            "HEALTH_OK")
    assert [e.message for e in cleared] == [
        "Health check cleared: OSD_DOWN (was: 1 osds down: osd.0)", "Cluster is now healthy"]
