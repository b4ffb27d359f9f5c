"""Loligo's `crush test` against Ceph's own crushtool on random maps: every line must match.

Needs crushtool (Debian ceph-base, installed by scripts/setup when root); skips loudly without.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from cluster.cli import main
from tests.crushgen import generate

CRUSHTOOL = shutil.which("crushtool")
pytestmark = pytest.mark.skipif(
    CRUSHTOOL is None,
    reason="crushtool not installed (apt-get install ceph-base): Ceph comparison NOT checked")


def crushtool(*args: str) -> str:
    done = subprocess.run([CRUSHTOOL, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"crushtool {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def loligo(*args: str) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(args))
    assert rc == 0, f"loligo {' '.join(args)} exited {rc}"
    return buf.getvalue()


def first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False)):
        if x != y:
            return f"line {i + 1}:\n  crushtool: {x}\n  loligo:    {y}"
    return f"lengths differ: {len(a.splitlines())} vs {len(b.splitlines())} lines"


@pytest.mark.parametrize("seed", range(40))
def test_random_map_matches_crushtool(seed: int, tmp_path: Path) -> None:
    gen = generate(seed)
    src = tmp_path / "map.txt"
    src.write_text(gen.text)
    binary = tmp_path / "map.bin"
    crushtool("-c", str(src), "-o", str(binary))
    rng = random.Random(seed)
    for rule in gen.rules:
        for num_rep in rng.sample(range(1, 7), 3):
            args = ["--test", "--show-mappings", "--rule", str(rule), "--num-rep", str(num_rep),
                    "--min-x", "0", "--max-x", "150"]
            if rng.random() < 0.5:
                for osd in rng.sample(range(gen.num_devices), min(3, gen.num_devices)):
                    args += ["--weight", str(osd), rng.choice(["0", "0.5", "0.1", "1"])]
            if rng.random() < 0.3:
                args += ["--pool-id", str(rng.randint(0, 20))]
            expected = crushtool("-i", str(binary), *args)
            got = loligo("crush", "test", "-i", str(src), *args[1:])
            assert got == expected, (
                f"seed {seed} rule {rule} args {args}: {first_difference(expected, got)}\n"
                f"map:\n{gen.text}")


@pytest.mark.parametrize("seed", [3, 11, 17, 25, 33])
def test_utilization_and_statistics_match_crushtool(seed: int, tmp_path: Path) -> None:
    gen = generate(seed)
    src = tmp_path / "map.txt"
    src.write_text(gen.text)
    binary = tmp_path / "map.bin"
    crushtool("-c", str(src), "-o", str(binary))
    args = ["--show-utilization", "--show-statistics", "--min-x", "0", "--max-x", "499",
            "--weight", "0", "0.5"]
    expected = crushtool("-i", str(binary), "--test", *args)
    got = loligo("crush", "test", "-i", str(src), *args)
    assert got == expected, first_difference(expected, got)


@pytest.mark.parametrize("seed", [s for s in range(40) if "choose_args" in generate(s).text][:8])
def test_choose_args_decompile_like_crushtool(seed: int, tmp_path: Path) -> None:
    from rados_py.crush import text

    src, binary = tmp_path / "map.txt", tmp_path / "map.bin"
    src.write_text(generate(seed).text)
    crushtool("-c", str(src), "-o", str(binary))
    expected = crushtool("-d", str(binary))
    got = text.format(text.parse(src.read_text()))
    assert got == expected, first_difference(expected, got)
