"""The wire contract: committed generated modules are current, and maps cross it unchanged."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from rados_py.crush import wire
from rados_py.crush.model import CrushMap, Tunables
from rados_py.errors import CrushMapError
from tests.crushgen import generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="grpcio-tools not installed: generated modules NOT checked")
def test_generated_modules_are_current(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True)
    committed = ROOT / "rados_py" / "proto"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.py")}
    current = {p.relative_to(committed): p.read_bytes() for p in committed.rglob("*.py")}
    stale = sorted(str(p) for p in fresh.keys() | current.keys()
                   if fresh.get(p) != current.get(p))
    assert not stale, f"rados_py/proto is stale for {stale}: run python scripts/gen_proto.py"


@pytest.mark.parametrize("seed", range(8))
def test_crush_map_round_trips_through_protobuf(seed: int) -> None:
    from rados_py.crush import text

    m = text.parse(generate(seed, classes=seed % 2 == 0).text)
    again = wire.loads(wire.dumps(m))
    assert again == m


def test_tunables_survive_even_when_zero() -> None:
    m = CrushMap(tunables=Tunables.legacy().replace(choose_total_tries=0))
    assert wire.loads(wire.dumps(m)).tunables == m.tunables


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\x08\x02", b"\x0a\x05abc"])
def test_garbage_is_refused_cleanly(garbage: bytes) -> None:
    with pytest.raises(CrushMapError):
        wire.loads(garbage)
