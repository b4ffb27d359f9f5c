"""Placement speed: 1,000,000 CRUSH mappings (rule 0 of the 12-OSD/4-host map: chooseleaf firstn
host, 3 replicas) in one batch call, and the same through Ceph's crushtool when it is installed.

    .venv/bin/python tests/bench/bench_placement.py [--count N] [--repeat R]

Prints mappings per second for each and their ratio (higher than 1: Loligo is faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rados_py.crush import text  # noqa: E402
from rados_py.crush.compiled import CompiledMap  # noqa: E402
from tests.vectors import vectors_dir  # noqa: E402


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    map_text = (vectors_dir() / "b_hosts.txt").read_text()
    cm = CompiledMap(text.parse(map_text))

    one_s = best_of(args.repeat, lambda: cm.map_range_raw(0, 0, args.count, 3, threads=1))
    print(f"loligo x1 : {args.count:,} mappings in {one_s:.3f} s = "
          f"{args.count / one_s:,.0f} mappings/s (one batch call, one thread)")
    loligo_s = best_of(args.repeat, lambda: cm.map_range_raw(0, 0, args.count, 3))
    rate = args.count / loligo_s
    print(f"loligo    : {args.count:,} mappings in {loligo_s:.3f} s = {rate:,.0f} mappings/s "
          f"(one batch call, every CPU: {os.cpu_count()})")

    crushtool = shutil.which("crushtool")
    if crushtool is None:
        print("crushtool : not installed (apt-get install ceph-base): no comparison")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        src, binary = Path(tmp) / "map.txt", Path(tmp) / "map.bin"
        src.write_text(map_text)
        subprocess.run([crushtool, "-c", str(src), "-o", str(binary)], check=True)
        cmd = [crushtool, "-i", str(binary), "--test", "--show-statistics", "--rule", "0",
               "--num-rep", "3", "--min-x", "0", "--max-x", str(args.count - 1)]
        ceph_s = best_of(args.repeat, lambda: subprocess.run(cmd, check=True,
                                                             capture_output=True))
    ceph_rate = args.count / ceph_s
    print(f"crushtool : {args.count:,} mappings in {ceph_s:.3f} s = {ceph_rate:,.0f} mappings/s "
          "(--test --show-statistics, whole process)")
    print(f"ratio     : loligo / crushtool = {rate / ceph_rate:.2f}x "
          f"(one thread: {args.count / one_s / ceph_rate:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
