"""`loligo crush ...`: CRUSH maps from the command line, compatible with Ceph's crushtool so that
results diff line for line against `crushtool --test` and `osdmaptool --test-map-object`.

    loligo crush compile -i map.txt -o map.bin      text -> binary (protobuf, see proto/)
    loligo crush decompile -i map.bin [-o map.txt]  binary -> text (crushtool -d syntax)
    loligo crush test -i MAP --show-mappings --rule 0 --num-rep 3 --min-x 0 --max-x 1023
    loligo crush map-object -i MAP --pool-id 1 --pg-num 64 --size 3 --rule 0 NAME...
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections import Counter
from pathlib import Path

from rados_py import _placement
from rados_py.crush import text, wire
from rados_py.crush.compiled import ITEM_NONE, CompiledMap
from rados_py.crush.model import OP_EMIT, RULE_TYPE_ERASURE, WEIGHT_ONE, CrushMap
from rados_py.errors import CrushMapError, InvalidArgument, NotFound
from rados_py.osdmap import POOL_ERASURE, POOL_REPLICATED, OSDMap, OsdState, Pool

DEFAULT_MAX_X = 1023  # crushtool's default x range is 0..1023
CEPH_CRUSH_MAGIC = (0x00010000).to_bytes(4, "little")  # how `crushtool -c` output begins


# --- loading and saving -----------------------------------------------------------------------

def _is_text(data: bytes) -> bool:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r" for c in decoded)


def load_map(path: str) -> CrushMap:
    """A CRUSH map from a text file (crushtool -d syntax) or a compiled (protobuf) file."""
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    if _is_text(data):
        return text.parse(data.decode("utf-8"))
    if data[:4] == CEPH_CRUSH_MAGIC:
        raise CrushMapError(f"{path} is Ceph's binary crushmap: give the text map "
                            f"(crushtool -d {path} -o map.txt)")
    return wire.loads(data)


def _write(path: str | None, data: bytes) -> None:
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(path).write_bytes(data)


def cmd_compile(args: argparse.Namespace) -> int:
    m = load_map(args.input)
    CompiledMap(m)  # refuse a map that cannot be mapped before writing it
    _write(args.output, wire.dumps(m))
    return 0


def cmd_decompile(args: argparse.Namespace) -> int:
    _write(args.output, text.format(load_map(args.input)).encode())
    return 0


# --- crush test (crushtool --test) --------------------------------------------------------------

def _float32_weight(value: float) -> int:
    """crushtool's conversion of a 0..1 reweight: as float, times 0x10000, truncated."""
    f = struct.unpack("f", struct.pack("f", value))[0]
    return max(0, min(WEIGHT_ONE, int(f * WEIGHT_ONE)))


def test_weights(m: CrushMap, overrides: list[tuple[int, float]]) -> list[int]:
    """The device weight vector crushtool --test uses: 1.0 for every device in a bucket."""
    present = {it.id for b in m.buckets.values() for it in b.items if it.id >= 0}
    weights = [WEIGHT_ONE if d in present else 0 for d in range(m.max_devices)]
    for osd, w in overrides:
        if not 0 <= osd < len(weights):
            raise InvalidArgument(f"--weight: no device {osd} in the map")
        weights[osd] = _float32_weight(w)
    return weights


def _fmt_g(v: float) -> str:
    return f"{v:.6g}"


def _map_rows(cm: CompiledMap, rule: int, xs: range, nr: int, weights: list[int],
              pool_id: int | None) -> list[list[int]]:
    if pool_id is None:
        return cm.map_range(rule, xs.start, len(xs), nr, weights)
    # crushtool --pool-id mixes the pool into x, as Ceph does for PGs of a HASHPSPOOL pool (it
    # still maps with the default choose_args, as crushtool does; the OSDMap uses the pool's)
    return cm.map_inputs(rule, (_placement.hash32(x, pool_id) for x in xs), nr, weights)


def cmd_test(args: argparse.Namespace) -> int:
    m = load_map(args.input)
    cm = CompiledMap(m)
    weights = test_weights(m, args.weight or [])
    if args.x is not None:
        args.min_x = args.max_x = args.x
    if args.min_x > args.max_x:
        raise InvalidArgument(f"--min-x {args.min_x} is above --max-x {args.max_x}")
    if args.rule is not None and args.rule not in m.rules:
        raise NotFound(f"no rule {args.rule} in the map (rules: {sorted(m.rules)})")
    rules = [args.rule] if args.rule is not None else range(max(m.rules, default=-1) + 1)
    xs = range(args.min_x, args.max_x + 1)
    out = sys.stdout
    summary = args.show_statistics or args.show_utilization
    for rule_id in rules:
        rule = m.rules.get(rule_id)
        if rule is None:
            if summary:
                out.write(f"rule {rule_id} dne\n")
            continue
        lo, hi = (args.num_rep, args.num_rep) if args.num_rep else (rule.min_size, rule.max_size)
        if summary:
            out.write(f"rule {rule_id} ({rule.name}), x = {xs.start}..{xs.stop - 1}, "
                      f"numrep = {lo}..{hi}\n")
        for nr in range(lo, hi + 1):
            rows = _map_rows(cm, rule_id, xs, nr, weights, args.pool_id)
            if args.show_mappings:
                out.writelines(f"CRUSH rule {rule_id} x {x} [{','.join(map(str, row))}]\n"
                               for x, row in zip(xs, rows, strict=True))
            if summary:
                _write_summary(out, cm, rule_id, nr, rows, len(xs), weights,
                               args.show_utilization)
    out.flush()
    return 0


def _f32(v: float) -> float:
    """Round to a C float: crushtool computes the expected counts in single precision."""
    return struct.unpack("f", struct.pack("f", v))[0]


def max_affected_by_rule(cm: CompiledMap, rule_id: int) -> int:
    """crushtool's upper bound on the replicas a rule can place (CrushTester's
    get_maximum_affected_by_rule), reproduced as is so --show-utilization matches: every step
    with an op >= 2 other than emit counts its arg2 as a type, and buckets (shadow ones too,
    devices never) of each such type are counted once per occurrence."""
    steps = [s for s in cm.crush_map.rules[rule_id].steps if s.op >= 2 and s.op != OP_EMIT]
    affected = [s.arg2 for s in steps]
    replications = {s.arg2: s.arg1 for s in steps}
    of_type: Counter[int] = Counter()
    for t in affected:
        of_type[t] += sum(1 for b in cm.buckets.values() if b.type_id == t)
    for t in affected:
        if 0 < replications[t] < of_type[t]:
            of_type[t] = replications[t]
    max_buckets = max((-1 - b for b in cm.buckets), default=-1) + 1
    result = max(max_buckets, cm.max_devices)
    for t in affected:
        if 0 < of_type[t] < result:
            result = of_type[t]
    return result


def _write_summary(out, cm: CompiledMap, rule_id: int, nr: int, rows: list[list[int]],
                   total: int, weights: list[int], utilization: bool) -> None:
    name = cm.crush_map.rules[rule_id].name
    sizes = Counter(len(row) for row in rows)
    for size in sorted(sizes):
        out.write(f"rule {rule_id} ({name}) num_rep {nr} result size == {size}:\t"
                  f"{sizes[size]}/{total}\n")
    if not utilization:
        return
    stored = Counter(o for row in rows for o in row if o != ITEM_NONE)
    weight_sum = sum(weights) & 0xFFFFFFFF
    if weight_sum == 0:
        return
    expected_objects = _f32(min(nr, max_affected_by_rule(cm, rule_id)) * total)
    for dev, w in enumerate(weights):
        expected = _f32(_f32(_f32(w) / _f32(weight_sum)) * expected_objects)
        if stored[dev] > 0 and expected > 0:
            out.write(f"  device {dev}:\t\t stored : {stored[dev]}\t "
                      f"expected : {_fmt_g(expected)}\n")


# --- crush map-object (osdmaptool --test-map-object) ------------------------------------------

def _object_names(args: argparse.Namespace) -> list[bytes]:
    raw: list[bytes] = [name.encode("utf-8", "surrogateescape") for name in args.names]
    if args.names_file:
        data = Path(args.names_file).read_bytes()
        raw += [line[:-1] if line.endswith(b"\n") else line
                for line in data.splitlines(keepends=True)]
    if not args.hex:
        return raw
    try:
        return [bytes.fromhex(n.decode("ascii").strip()) for n in raw]
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument("--hex: names must be hex bytes (e.g. 666f6f for foo)") from None


def cmd_map_object(args: argparse.Namespace) -> int:
    m = load_map(args.input)
    cm = CompiledMap(m)
    rule = m.rules.get(args.rule)
    if rule is None:
        raise NotFound(f"no rule {args.rule} in the map (rules: {sorted(m.rules)})")
    pool_type = args.pool_type or (POOL_ERASURE if rule.type == RULE_TYPE_ERASURE
                                   else POOL_REPLICATED)
    pool = Pool(args.pool_id, "pool", size=args.size, min_size=1, pg_num=args.pg_num,
                pgp_num=args.pgp_num or args.pg_num, crush_rule=args.rule, type=pool_type)
    down, out_ = set(args.mark_down or []), set(args.mark_out or [])
    osds = {d: OsdState(d, up=d not in down, weight=0 if d in out_ else WEIGHT_ONE)
            for d in m.devices}
    osdmap = OSDMap(crush=cm, pools={pool.id: pool}, osds=osds)
    nspace = args.nspace.encode("utf-8", "surrogateescape")
    names = _object_names(args)
    if not names:
        raise InvalidArgument("no object names: give NAME arguments or --names-file")
    for name in names:
        ps, pgid, placement = osdmap.map_object(pool.id, name, nspace)
        try:
            text_name: str | None = name.decode("utf-8")
        except UnicodeDecodeError:
            text_name = None
        sys.stdout.write(json.dumps({
            "name_hex": name.hex(), "name": text_name, "nspace": args.nspace,
            "pool": pool.id, "pg_num": pool.pg_num, "pgp_num": pool.pgp_num,
            "raw_pgid": f"{pool.id}.{ps:x}", "pgid": str(pgid),
            "up": placement.up, "up_primary": placement.up_primary,
            "acting": placement.acting, "acting_primary": placement.acting_primary,
        }) + "\n")
    sys.stdout.flush()
    return 0


# --- argument parsing -------------------------------------------------------------------------

def _weight_pair(values: list[str]) -> tuple[int, float]:
    try:
        return int(values[0]), float(values[1])
    except ValueError:
        raise InvalidArgument(f"--weight wants OSD WEIGHT, got {' '.join(values)}") from None


class _WeightAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        try:
            pair = _weight_pair(values)
        except InvalidArgument as e:
            parser.error(str(e))
        getattr(namespace, self.dest).append(pair)


def _nonneg(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return n


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return n


def register(sub) -> argparse._SubParsersAction:
    """Add `loligo crush`; returns its subparsers so mon_cli can add the cluster's map commands."""
    crush = sub.add_parser("crush", help="CRUSH maps: compile, decompile, test, map objects",
                           description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    csub = crush.add_subparsers(dest="crush_command", metavar="SUBCOMMAND")
    csub.required = True

    p = csub.add_parser("compile", help="text map -> compiled (binary) map")
    p.add_argument("-i", "--input", required=True, help="text map (- for stdin)")
    p.add_argument("-o", "--output", required=True, help="compiled map to write (- for stdout)")
    p.set_defaults(func=cmd_compile)

    p = csub.add_parser("decompile", help="compiled or text map -> text (crushtool -d syntax)")
    p.add_argument("-i", "--input", required=True, help="map file (- for stdin)")
    p.add_argument("-o", "--output", help="text file to write (default: stdout)")
    p.set_defaults(func=cmd_decompile)

    p = csub.add_parser("test", help="map a range of inputs like `crushtool --test`")
    p.add_argument("-i", "--input", required=True, help="map file, text or compiled")
    p.add_argument("--rule", type=_nonneg, help="rule id (default: every rule)")
    p.add_argument("--num-rep", type=_positive,
                   help="replicas to choose (default: each from the rule's min_size..max_size)")
    p.add_argument("--min-x", type=int, default=0, help="first input (default 0)")
    p.add_argument("--max-x", type=int, default=DEFAULT_MAX_X, help="last input (default 1023)")
    p.add_argument("--x", type=int, help="map this single input")
    p.add_argument("--pool-id", type=_nonneg, help="mix this pool id into x, as for PGs")
    p.add_argument("--weight", nargs=2, action=_WeightAction, default=[],
                   metavar=("OSD", "WEIGHT"), help="reweight a device (0..1); repeatable")
    p.add_argument("--show-mappings", action="store_true", help="print each mapping")
    p.add_argument("--show-statistics", action="store_true", help="print result sizes")
    p.add_argument("--show-utilization", action="store_true",
                   help="print result sizes and per-device counts vs expected")
    p.set_defaults(func=cmd_test)

    p = csub.add_parser("map-object", help="object names -> PG -> OSDs, one JSON line each")
    p.add_argument("-i", "--input", required=True, help="map file, text or compiled")
    p.add_argument("--pool-id", type=_nonneg, required=True)
    p.add_argument("--pg-num", type=_positive, required=True)
    p.add_argument("--pgp-num", type=_positive, help="default: pg-num")
    p.add_argument("--size", type=_positive, required=True, help="replicas (or k+m)")
    p.add_argument("--rule", type=_nonneg, required=True)
    p.add_argument("--pool-type", choices=[POOL_REPLICATED, POOL_ERASURE],
                   help="default: from the rule's type")
    p.add_argument("--mark-down", type=_nonneg, action="append", metavar="OSD",
                   help="treat this OSD as down; repeatable")
    p.add_argument("--mark-out", type=_nonneg, action="append", metavar="OSD",
                   help="treat this OSD as out (weight 0); repeatable")
    p.add_argument("--nspace", default="", help="RADOS namespace of the objects")
    p.add_argument("--hex", action="store_true", help="names are hex-encoded bytes")
    p.add_argument("--names-file", help="file with one object name per line")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=cmd_map_object)
    return csub


__all__ = ["CrushMapError", "load_map", "register"]
