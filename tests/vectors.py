"""Shared helpers for tests that compare Loligo with Ceph: where the vectors live, how to call
Ceph's `crushtool`, and a seeded generator of random (crushtool-valid) text crush maps."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CRUSHTOOL_MISSING = ("crushtool not installed: apt-get install ceph-base "
                     "(Ceph's crushtool is the oracle these tests compare against)")


def vectors_dir() -> Path:
    """Ceph's placement vectors kept in the repository (tests/data/crush-vectors, made with
    Ceph 16.2.15's crushtool and osdmaptool: see its README), or $LOLIGO_CRUSH_VECTORS."""
    env = os.environ.get("LOLIGO_CRUSH_VECTORS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "data" / "crush-vectors"


def require_crushtool() -> str:
    """Path of crushtool, or skip the test loudly."""
    path = shutil.which("crushtool")
    if path is None:
        pytest.skip(CRUSHTOOL_MISSING)
    return path


def crushtool_compile(text: str) -> tuple[dict, str] | str:
    """Compile with crushtool: (the --dump JSON, the -d text), or crushtool's error text."""
    tool = require_crushtool()
    with tempfile.TemporaryDirectory() as tmp:
        src, binary = Path(tmp) / "map.txt", Path(tmp) / "map.bin"
        src.write_text(text)
        done = subprocess.run([tool, "-c", str(src), "-o", str(binary)], capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0 or not binary.exists():
            return (done.stdout + done.stderr)[:500] or f"crushtool exit {done.returncode}"
        dump = subprocess.run([tool, "-i", str(binary), "--dump"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
        decompiled = subprocess.run([tool, "-d", str(binary)], capture_output=True, text=True,
                                    timeout=60, check=True).stdout
    return json.loads(dump), decompiled


def random_weight(rng: random.Random, limit: float = 100.0) -> str:
    """A weight as people (and odd tools) write them."""
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randint(0, int(limit)))
    if kind == 1:
        return f"{rng.uniform(0, limit):.{rng.randint(1, 9)}f}"
    if kind == 2:
        return f"{rng.randint(0, int(limit * 65536)) / 65536:.{rng.randint(3, 12)}f}"
    if kind == 3:
        return f"{rng.uniform(0.001, limit):.{rng.randint(1, 6)}e}"
    if kind == 4:
        return rng.choice(["1", "0.5", "1.2", "0.333333", "2.", ".75", "+1", "0.99999999"])
    near_tie = rng.randint(1, int(limit * 65536) - 1) + rng.choice([-1e-7, 1e-7, 0.5])
    return f"{near_tie / 65536:.10f}"


def random_map_text(seed: int) -> str:
    """A random crush map crushtool compiles: several roots, classes, declared and missing ids,
    every bucket algorithm, explicit and implied weights, rules of every kind, noise."""
    rng = random.Random(seed)
    out = ["# begin crush map  # generated"]
    for name, lo, hi in (("choose_local_tries", 0, 3), ("choose_total_tries", 1, 100),
                         ("chooseleaf_descend_once", 0, 1), ("chooseleaf_vary_r", 0, 2),
                         ("chooseleaf_stable", 0, 1), ("straw_calc_version", 0, 2),
                         ("allowed_bucket_algs", 0, 63)):
        if rng.random() < 0.3:
            out.append(f"tunable {name} {rng.randint(lo, hi)}")
    classes = rng.sample(["ssd", "hdd", "nvme", "z9"], rng.randint(0, 3))
    count = rng.randint(4, 40)
    dev_ids = rng.sample(range(count * 2), count)
    rng.shuffle(dev_ids)
    used: set[str] = set()
    for d in dev_ids:
        cls = rng.choice(classes) if classes and rng.random() < 0.8 else ""
        used.add(cls)
        out.append(f"device {d} osd.{d}" + (f" class {cls}" if cls else ""))
    types = ["osd", "host", "rack", "root"]
    out += [f"type {k}\t{t}" for k, t in enumerate(types)]
    free_devs = list(dev_ids)
    rng.shuffle(free_devs)
    declared = rng.sample(range(1, 200), 120)
    buckets: list[tuple[str, int, list[str]]] = []  # name, type level, items
    level_pool: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for k in range(rng.randint(1, 12)):
        name = f"h{k}"
        items = [f"osd.{free_devs.pop()}" for _ in range(rng.randint(0, 4)) if free_devs]
        buckets.append((name, 1, items))
        level_pool[1].append(name)
    for level in (2, 3):
        below = level_pool[level - 1]
        rng.shuffle(below)
        while below and rng.random() < 0.9:
            name = f"{types[level][0]}{len(buckets)}"
            items = [below.pop() for _ in range(rng.randint(1, 3)) if below]
            buckets.append((name, level, items))
            level_pool[level].append(name)
    texts = [_bucket_text(rng, name, types[level], items, classes, declared)
             for name, level, items in buckets]
    out += texts
    roots = [n for n, lvl, _ in buckets if not any(n in its for _, _, its in buckets)]
    # a class take through a uniform bucket fails in crushtool: keep those maps class-free
    take_classes = [] if any("alg uniform" in t for t in texts) else sorted(used - {""})
    for rule_id in rng.sample(range(0, 12), rng.randint(0, 4)):
        out.append(_rule_text(rng, rule_id, rng.choice(roots), take_classes, types))
    out.append("# end crush map")
    return "\n".join(out) + "\n"


def _bucket_text(rng: random.Random, name: str, type_name: str, items: list[str],
                 classes: list[str], declared: list[int]) -> str:
    alg = rng.choice(["straw2", "straw2", "straw", "list", "tree", "uniform"])
    same = rng.choice(["1", "2.5", "0.75"])  # uniform buckets need one explicit item weight
    lines = [f"{type_name} {name} {{"]
    if rng.random() < 0.8:
        lines.append(f"\tid -{declared.pop()}\t# a comment")
    for cls in classes:
        if rng.random() < 0.3:
            lines.append(f"\tid -{declared.pop()} class {cls}")
    lines.append(f"\talg {alg}")
    if rng.random() < 0.7:
        lines.append(rng.choice(["\thash 0\t# rjenkins1", "  hash rjenkins1"]))
    for item in items:
        weight = f" weight {random_weight(rng)}" if rng.random() < 0.7 else ""
        weight = f" weight {same}" if alg == "uniform" else weight
        lines.append(f"\titem {item}{weight}")
    return "\n".join(lines) + ("\n}" if rng.random() < 0.8 or "#" in lines[-1] else " }")


def _rule_text(rng: random.Random, rule_id: int, root: str, classes: list[str],
               types: list[str]) -> str:
    take = f"step take {root}" + (f" class {rng.choice(classes)}" if classes and
                                  rng.random() < 0.5 else "")
    steps = []
    if rng.random() < 0.3:
        steps.append(f"step set_choose_tries {rng.randint(1, 100)}")
    if rng.random() < 0.2:
        steps.append(f"step set_chooseleaf_tries {rng.randint(1, 10)}")
    steps.append(take)
    op = rng.choice(["choose firstn", "chooseleaf firstn", "choose indep", "chooseleaf indep"])
    steps.append(f"step {op} {rng.randint(-2, 4)} type {rng.choice(types[:3])}")
    if rng.random() < 0.3:
        steps.append(f"step choose firstn 1 type {types[0]}")
    steps.append("step emit")
    kind = rng.choice(["replicated", "erasure"])
    key = rng.choice(["id", "ruleset"])
    return (f"rule r{rule_id} {{\n\t{key} {rule_id}\n\ttype {kind}\n\tmin_size 1\n\tmax_size 10\n\t"
            + "\n\t".join(steps) + "\n}")
