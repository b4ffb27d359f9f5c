"""The object -> PG -> OSD chain against Ceph's osdmaptool: pools whose pg_num is not a power of
two and whose pgp_num differs, OSDs marked out, every PG of a pool and random object names."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rados_py.crush import text
from rados_py.crush.compiled import CompiledMap
from rados_py.osdmap import OSDMap, OsdState, PgId, Pool
from tests.vectors import vectors_dir

OSDMAPTOOL = shutil.which("osdmaptool")
CRUSHTOOL = shutil.which("crushtool")
pytestmark = pytest.mark.skipif(
    OSDMAPTOOL is None or CRUSHTOOL is None,
    reason="osdmaptool/crushtool not installed (apt-get install ceph-base): NOT compared")
LINE = re.compile(r"^(\d+)\.([0-9a-f]+) raw \(\[([\d,]*)\], p(-?\d+)\) up \(\[([\d,]*)\], "
                  r"p(-?\d+)\) acting \(\[([\d,]*)\], p(-?\d+)\)$")


def tool(*args: str) -> str:
    done = subprocess.run([OSDMAPTOOL, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ints(csv: str) -> list[int]:
    return [int(v) for v in csv.split(",") if v]


@pytest.fixture(scope="module")
def crush_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("osdmap") / "b.map"
    subprocess.run([CRUSHTOOL, "-c", str(vectors_dir() / "b_hosts.txt"), "-o", str(out)],
                   check=True)
    return out


# (pg bits, pgp bits) of osdmaptool --createsimple 12: pg_num = 12 << bits
# (osdmaptool honours only the last --mark-out, so one OSD out at a time)
@pytest.mark.parametrize("pg_bits, pgp_bits, out", [(3, 3, []), (3, 2, [6]), (1, 0, [10])])
def test_every_pg_and_objects_match_osdmaptool(tmp_path: Path, crush_binary: Path,
                                               pg_bits: int, pgp_bits: int,
                                               out: list[int]) -> None:
    om = tmp_path / "om.bin"
    tool("--createsimple", "12", "--with-default-pool", "--pg-bits", str(pg_bits),
         "--pgp-bits", str(pgp_bits), str(om), "--clobber")
    tool(str(om), "--import-crush", str(crush_binary))
    marks = ["--mark-up-in", *[a for o in out for a in ("--mark-out", str(o))]]
    pool_line = next(line for line in tool(str(om), "--print").splitlines()
                     if line.startswith("pool 1 "))
    pg_num = int(re.search(r"pg_num (\d+)", pool_line).group(1))
    pgp_num = int(re.search(r"pgp_num (\d+)", pool_line).group(1))
    cm = CompiledMap(text.parse((vectors_dir() / "b_hosts.txt").read_text()))
    osdmap = OSDMap(crush=cm, pools={1: Pool(1, "rbd", pg_num=pg_num, pgp_num=pgp_num)},
                    osds={i: OsdState(i, weight=0 if i in out else 0x10000) for i in range(12)})

    expected = {}
    for line in tool(str(om), *marks, "--test-map-pgs-dump-all", "--pool", "1").splitlines():
        m = LINE.match(line)
        if m:
            expected[int(m.group(2), 16)] = (ints(m.group(5)), int(m.group(6)))
    assert len(expected) == pg_num
    got = {seed: (p.up, p.up_primary) for seed, p in enumerate(osdmap.map_pool(1))}
    assert got == expected, f"pg_num {pg_num} pgp_num {pgp_num} out {out}"

    rng = random.Random(pg_bits * 10 + pgp_bits)
    names = [f"obj-{rng.randrange(10**9)}" for _ in range(15)] + ["", "a/b/../c", "ü-ñ"]
    for name in names:
        if not name:
            continue  # osdmaptool cannot take an empty argument
        line = tool(str(om), *marks, "--test-map-object", name, "--pool", "1").splitlines()[-1]
        m = re.match(r" object '(.*)' -> 1\.([0-9a-f]+) -> \[([\d,]*)\]", line)
        assert m, line
        _, pgid, placement = osdmap.map_object(1, name.encode())
        assert (pgid, placement.up) == (PgId(1, int(m.group(2), 16)), ints(m.group(3))), name


CHOOSE_ARGS = """
choose_args 1 {
  {
    bucket_id -1
    weight_set [
      [ 1.2 0.333333 2 4.5 ]
      [ 3 1 0.5 1 ]
    ]
  }
  {
    bucket_id -2
    ids [ -20 -21 -22 ]
  }
}
choose_args 18446744073709551615 {
  {
    bucket_id -3
    weight_set [
      [ 1 1 1 ]
      [ 0.5 0.25 7 ]
    ]
    ids [ 5 6 7 ]
  }
}
"""


@pytest.mark.parametrize("pool_set", [1, 7], ids=["pool-weight-set", "default-weight-set"])
def test_choose_args_of_the_pool_or_the_default_match_osdmaptool(tmp_path: Path,
                                                                 pool_set: int) -> None:
    """The OSDMap maps a pool with its own choose_args set (the balancer's per-pool weight set),
    else with the default set, as Ceph does."""
    text_map = (vectors_dir() / "b_hosts.txt").read_text() + CHOOSE_ARGS.replace(
        "choose_args 1 {", f"choose_args {pool_set} {{")
    src, binary, om = tmp_path / "map.txt", tmp_path / "map.bin", tmp_path / "om.bin"
    src.write_text(text_map)
    subprocess.run([CRUSHTOOL, "-c", str(src), "-o", str(binary)], check=True)
    tool("--createsimple", "12", "--with-default-pool", "--pg-bits", "3", "--pgp-bits", "3",
         str(om), "--clobber")
    tool(str(om), "--import-crush", str(binary))
    expected = {}
    for line in tool(str(om), "--mark-up-in", "--test-map-pgs-dump-all", "--pool", "1"
                     ).splitlines():
        m = LINE.match(line)
        if m:
            expected[int(m.group(2), 16)] = ints(m.group(5))
    cm = CompiledMap(text.parse(text_map))
    osdmap = OSDMap(crush=cm, pools={1: Pool(1, "rbd", pg_num=len(expected))},
                    osds={i: OsdState(i) for i in range(12)})
    assert {seed: p.up for seed, p in enumerate(osdmap.map_pool(1))} == expected
