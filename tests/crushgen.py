"""Seeded random CRUSH maps in Ceph's text syntax, for comparing Loligo with crushtool.

The generator writes text directly (not through rados_py.crush.text), so a test built on it checks
the parser, the compiler and the C mapper together against Ceph's own tools.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

TYPES = ["osd", "host", "rack", "row", "root"]
OPTIMAL = {"choose_local_tries": 0, "choose_local_fallback_tries": 0, "choose_total_tries": 50,
           "chooseleaf_descend_once": 1, "chooseleaf_vary_r": 1, "chooseleaf_stable": 1,
           "straw_calc_version": 1, "allowed_bucket_algs": 54}


@dataclass
class GeneratedMap:
    text: str
    num_devices: int
    rules: dict[int, str] = field(default_factory=dict)  # id -> "replicated"|"erasure"


def _weight(rng: random.Random, zero: bool = True) -> str:
    choice = rng.random()
    if choice < 0.1 and zero:
        return "0"
    if choice < 0.4:
        return "1"
    return f"{rng.uniform(0.01, 8):.{rng.choice([1, 2, 3, 5])}f}"


def _tunables(rng: random.Random) -> list[str]:
    profile = rng.choice(["optimal", "optimal", "legacy", "mixed"])
    if profile == "legacy":
        return []
    if profile == "optimal":
        return [f"tunable {k} {v}" for k, v in OPTIMAL.items()]
    lines = []
    for k, v in OPTIMAL.items():
        if rng.random() < 0.5:
            lines.append(f"tunable {k} {v}")
    if rng.random() < 0.3:
        lines.append(f"tunable choose_total_tries {rng.choice([5, 19, 30, 100])}")
    return lines


def generate(seed: int, classes: bool | None = None) -> GeneratedMap:
    rng = random.Random(seed)
    use_classes = rng.random() < 0.3 if classes is None else classes
    algs = ["straw2"] * 6 + ["straw", "list"]
    if not use_classes:
        # Ceph builds class shadow trees by adding items one by one, which tree buckets do not
        # survive deterministically and uniform buckets refuse: no classes with those.
        algs += ["tree", "uniform"]
    lines = ["# begin crush map", *_tunables(rng), ""]
    n_racks = rng.choice([0, 0, 2, 3])
    hosts_per = rng.randint(2, 5)
    n_hosts = (n_racks or 1) * hosts_per
    devices: list[tuple[int, str]] = []
    host_items: list[list[int]] = []
    dev = 0
    for _ in range(n_hosts):
        k = rng.randint(1, 4)
        host_items.append(list(range(dev, dev + k)))
        dev += k
    num_devices = dev
    for d in range(num_devices):
        # both classes exist (crushtool refuses a rule taking a class no device has)
        name = ["hdd", "ssd"][d] if d < 2 else rng.choice(["hdd", "ssd"])
        cls = f" class {name}" if use_classes else ""
        devices.append((d, cls))
    lines += [f"device {d} osd.{d}{cls}" for d, cls in devices]
    lines += [f"type {i} {t}" for i, t in enumerate(TYPES)]

    next_id = -2
    bucket_names: list[str] = []
    bucket_sizes: dict[int, tuple[str, int]] = {}  # id -> (alg, items)

    def bucket(kind: str, name: str, items: list[tuple[str, str | None]]) -> None:
        nonlocal next_id
        alg = rng.choice(algs)
        bucket_sizes[next_id] = (alg, len(items))
        body = [f"{kind} {name} {{", f"\tid {next_id}", f"\talg {alg}", "\thash 0"]
        next_id -= 1
        same = _weight(rng, zero=False)  # crushtool crashes on an all-zero uniform bucket
        for item, w in items:
            if alg == "uniform":
                w = same  # crushtool insists on identical weights in a uniform bucket
            body.append(f"\titem {item}" + (f" weight {w}" if w is not None else ""))
        body.append("}")
        lines.extend(body)
        bucket_names.append(name)

    host_names = []
    for h, items in enumerate(host_items):
        name = f"host{h}"
        bucket("host", name, [(f"osd.{d}", _weight(rng)) for d in items])
        host_names.append(name)
    top_items = host_names
    if n_racks:
        rack_names = []
        for r in range(n_racks):
            name = f"rack{r}"
            members = host_names[r * hosts_per:(r + 1) * hosts_per]
            bucket("rack", name, [(h, _weight(rng) if rng.random() < 0.3 else None)
                                  for h in members])
            rack_names.append(name)
        top_items = rack_names
    root_alg = rng.choice(["straw2", "straw2", "straw"])
    bucket_sizes[-1] = (root_alg, len(top_items))
    lines += ["root default {", "\tid -1", f"\talg {root_alg}", "\thash 0"]
    lines += [f"\titem {t}" + (f" weight {_weight(rng)}" if rng.random() < 0.2 else "")
              for t in top_items]
    lines.append("}")

    rules: dict[int, str] = {}
    domain = "rack" if n_racks and rng.random() < 0.5 else "host"
    take = "step take default" + (f" class {rng.choice(['hdd', 'ssd'])}" if use_classes else "")
    candidates = [
        ("replicated", [take, f"step chooseleaf firstn 0 type {domain}", "step emit"]),
        ("erasure", [take, f"step chooseleaf indep 0 type {domain}", "step emit"]),
        ("replicated", [take, "step choose firstn 0 type host", "step choose firstn 1 type osd",
                        "step emit"]),
        ("erasure", ["step set_chooseleaf_tries 5", "step set_choose_tries 100", take,
                     "step choose indep 0 type osd", "step emit"]),
        ("replicated", [take, "step choose firstn -1 type osd", "step emit",
                        "step take host0", "step chooseleaf firstn 1 type osd", "step emit"]),
        ("replicated", [take, f"step choose firstn 2 type {domain}",
                        "step chooseleaf firstn 2 type osd", "step emit"]),
        ("erasure", [take, "step choose indep 2 type host", "step choose indep 0 type osd",
                     "step emit"]),
    ]
    for rid, (rtype, steps) in enumerate(rng.sample(candidates, rng.randint(2, len(candidates)))):
        rules[rid] = rtype
        lines += [f"rule r{rid} {{", f"\tid {rid}", f"\ttype {rtype}", "\tmin_size 1",
                  "\tmax_size 10", *[f"\t{s}" for s in steps], "}"]
    if not use_classes and rng.random() < 0.4:
        lines += _choose_args(rng, bucket_sizes)
    lines.append("# end crush map")
    return GeneratedMap("\n".join(lines) + "\n", num_devices, rules)


def _choose_args(rng: random.Random, bucket_sizes: dict[int, tuple[str, int]]) -> list[str]:
    """choose_args sets (the default one and/or per pool) for some straw2 buckets: weight sets
    of 1 to 3 positions and/or ids to hash instead of the items'."""
    out = []
    for index in rng.sample([18446744073709551615, 1, 3], rng.randint(1, 2)):
        out.append(f"choose_args {index} {{")
        for bucket_id, (alg, size) in sorted(bucket_sizes.items(), reverse=True):
            if alg != "straw2" or size == 0 or rng.random() < 0.4:
                continue
            out += ["  {", f"    bucket_id {bucket_id}"]
            if rng.random() < 0.8:
                out.append("    weight_set [")
                for _ in range(rng.randint(1, 3)):
                    out.append("      [ " + " ".join(_weight(rng) for _ in range(size)) + " ]")
                out.append("    ]")
            if rng.random() < 0.5:
                ids = rng.sample(range(-1000, 1000), size)
                out.append("    ids [ " + " ".join(map(str, ids)) + " ]")
            out.append("  }")
        out.append("}")
    return out
