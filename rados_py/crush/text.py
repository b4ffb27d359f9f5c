"""Ceph's text crushmap: `parse()` reads what `crushtool -c` accepts, `format()` writes what
`crushtool -d` writes.

crushtool (Ceph 16.2, pacific) is the reference, so a map moves between Loligo and a Ceph
operator's tools unchanged. Its behaviour is kept wherever it shapes the map: weights go through a
32-bit float exactly as crushtool converts them, missing ids are allocated as crushtool allocates
them, a map without `tunable` lines gets the legacy (argonaut) tunables, and device-class ids
exist only when the map has a rule (crushtool builds shadow trees at the first rule). Where
crushtool silently wraps or mangles a value (weights of 32768 and more, tunables wider than their
field, a device listed in two buckets) the parser refuses with a `CrushMapError` naming the line.
Two deliberate differences: words must be separated by white space, braces or comments (crushtool's
scannerless grammar also reads run-together words such as `itemosd.1`), and a bucket may name
buckets defined further down in any acyclic way (crushtool's reordering handles only some cases).
"""

from __future__ import annotations

import dataclasses
import re
import struct
from dataclasses import dataclass, field
from fractions import Fraction

from rados_py.crush import classes
from rados_py.crush import model as cm
from rados_py.crush.model import Bucket, BucketItem, CrushMap, Device, Rule, Step, Tunables
from rados_py.errors import CrushMapError

MAX_DEVICE_WEIGHT = 100 * cm.WEIGHT_ONE  # crushtool: "device weight limited to 100"
INT32_MAX = 0x7FFFFFFF
# Widths of the tunable fields in Ceph's crush_map; crushtool wraps larger values silently.
_TUNABLE_MAX = {"chooseleaf_descend_once": 1, "chooseleaf_vary_r": 0xFF, "chooseleaf_stable": 0xFF,
                "straw_calc_version": 0xFF, "allowed_bucket_algs": 0xFFFFFFFF}
_ALG_COMMENT = {cm.ALG_UNIFORM: "\t# do not change bucket size ({size}) unnecessarily",
                cm.ALG_LIST: "\t# add new items at the end; do not change order unnecessarily",
                cm.ALG_TREE: "\t# do not change pos for existing items unnecessarily"}
_CHOOSE_BY_WORDS = {tuple(words.split()): op for op, words in cm.CHOOSE_OPS.items()}
_SET_BY_NAME = {name: op for op, name in cm.SET_OPS.items()}
_RULE_TYPE_BY_NAME = {name: t for t, name in cm.RULE_TYPE_NAMES.items()}

_TOKEN = re.compile(r"[{}]|[^\s{}#]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_INT = re.compile(r"-?\d+\Z")


# --- weights ---------------------------------------------------------------------------------
def _float32(value: Fraction) -> float:
    """The float32 nearest `value` (ties to even), as strtof gives it, returned as a float."""
    guess = struct.unpack("<f", struct.pack("<f", float(value)))[0]
    bits = struct.unpack("<I", struct.pack("<f", guess))[0]
    near = [struct.unpack("<f", struct.pack("<I", b))[0] for b in (bits - 1, bits, bits + 1)
            if 0 <= b < 0x7F800000]  # rounding via a double can land one float32 ulp off
    return min(near, key=lambda c: (abs(Fraction(c) - value), struct.pack("<f", c)[0] & 1))


def weight_from_text(text: str) -> int:
    """16.16 weight of a decimal string exactly as crushtool converts it: strtof, times 0x10000
    in float, truncated toward zero. `1.2` -> 78643, `0.99999999` -> 65536 (float rounding).

    Raises ValueError for text that is not a number, or whose weight does not fit 31 bits."""
    match = _REAL.match(text)
    if not match:
        raise ValueError(f"bad weight '{text[:40]}'")
    int_part, _, frac = match.group(1).partition(".")
    exp_text = (match.group(2) or "e0")[1:]
    exp_digits = exp_text.lstrip("+-").lstrip("0") or "0"
    exponent = int(exp_digits) if len(exp_digits) < 8 else 10**8
    digits, scale = (int_part + frac).lstrip("0"), (-1 if "-" in exp_text else 1) * exponent
    scale -= len(frac)
    if not digits or len(digits) + scale < -10:  # below 1e-10: truncates to weight 0
        return 0
    if len(digits) + scale > 6:
        raise ValueError(f"weight {text[:40]} is {'negative' if text[0] == '-' else 'too large'}")
    as_double = float(match.group(0).lstrip("+-"))  # correctly rounded
    if struct.unpack("<Q", struct.pack("<d", as_double))[0] & 0x1FFFFFFF == 0x10000000:
        # exactly halfway between two float32s: rounding via the double may be wrong, so round
        # the exact decimal (a sticky last digit keeps long inputs cheap and exact enough)
        if len(digits) > 100:
            scale += len(digits) - 101
            digits = digits[:100] + ("1" if digits[100:].strip("0") else "0")
        as_double = _float32(Fraction(int(digits)) * Fraction(10) ** scale)
    weight = int(struct.unpack("<f", struct.pack("<f", as_double))[0] * cm.WEIGHT_ONE)
    if weight > INT32_MAX:
        raise ValueError(f"weight {text[:40]} is too large (must be below 32768)")
    return -weight if text[0] == "-" else weight


def format_weight(weight: int) -> str:
    """A 16.16 weight as crushtool prints it: through a float32, rounded to 3 decimals."""
    as_float = struct.unpack("<f", struct.pack("<f", float(weight)))[0]
    return f"{as_float / cm.WEIGHT_ONE:.3f}"


# --- tokens ----------------------------------------------------------------------------------
class _Cursor:
    """The map's tokens with their line numbers: `#` comments dropped, braces split off."""

    def __init__(self, text: str):
        self.texts: list[str] = []
        self.lines: list[int] = []
        for n, raw in enumerate(text.split("\n"), 1):  # lines counted as crushtool counts them
            found = _TOKEN.findall(raw.split("#", 1)[0])
            self.texts += found
            self.lines += [n] * len(found)
        self.i = 0
        self.end_line = self.lines[-1] if self.lines else 1
        self.device_names: set[str] = set()  # kept here so that duplicates cost O(1)

    def peek(self) -> str | None:
        return self.texts[self.i] if self.i < len(self.texts) else None

    @property
    def line(self) -> int:
        return self.lines[self.i] if self.i < len(self.texts) else self.end_line

    def next(self, what: str) -> tuple[str, int]:
        """The next token and its line."""
        if self.i >= len(self.texts):
            raise CrushMapError(f"unexpected end of map, expected {what}", self.end_line)
        self.i += 1
        return self.texts[self.i - 1], self.lines[self.i - 1]

    def expect(self, word: str, where: str = "") -> int:
        tok, line = self.next(f"'{word}'")
        if tok != word:
            raise CrushMapError(f"expected '{word}'{where}, found '{tok[:40]}'", line)
        return line

    def accept(self, word: str) -> bool:
        if self.peek() == word:
            self.i += 1
            return True
        return False

    def name(self, what: str) -> str:
        tok, line = self.next(what)
        if not _NAME.match(tok):
            raise CrushMapError(f"bad {what} '{tok[:40]}': use letters, digits, '-', '_', '.'",
                                line)
        return tok

    def number(self, what: str, lo: int, hi: int) -> int:
        tok, line = self.next(what)
        if not _INT.match(tok) or (lo >= 0 and tok[0] == "-"):
            kind = "a non-negative integer" if lo >= 0 else "an integer"
            raise CrushMapError(f"bad {what} '{tok[:40]}': expected {kind}", line)
        big = len(tok.lstrip("-").lstrip("0")) > 19
        value = (hi + 1 if tok[0] != "-" else lo - 1) if big else int(tok)
        if not lo <= value <= hi:
            raise CrushMapError(f"{what} {tok[:40]} out of range {lo}..{hi}", line)
        return value


# --- parser ----------------------------------------------------------------------------------
@dataclass
class _RawItem:
    name: str
    weight: int | None
    pos: int | None
    line: int


@dataclass
class _RawBucket:
    """A bucket as written; names are resolved once every bucket has been read."""

    type_id: int
    name: str
    line: int
    ids: list[tuple[int, int]] = field(default_factory=list)  # (id, line); the last one wins
    class_ids: list[tuple[str, int, int]] = field(default_factory=list)  # (class, id, line)
    alg: int = cm.ALG_STRAW2
    items: list[_RawItem] = field(default_factory=list)


def parse(text: str) -> CrushMap:
    """Parse a text crushmap into a `CrushMap`; bad input raises `CrushMapError` with its line.

    The result is what `crushtool -c` compiles. Check it with `validate_map` before mapping: the
    text may hold values (a huge `choose_total_tries`) that are legal but unsafe to map with."""
    if not isinstance(text, str):
        raise CrushMapError("a crush map must be text")
    cur = _Cursor(text)
    m = CrushMap(tunables=Tunables.legacy())
    header = {"tunable": _parse_tunable, "device": _parse_device, "type": _parse_type}
    raw_buckets: list[_RawBucket] = []
    in_rules = False  # crushtool resolves the buckets (and their classes) at the first rule
    in_args = False  # choose_args sections close the map
    while (word := cur.peek()) is not None:
        if word in header:
            if raw_buckets or in_rules or in_args:
                raise CrushMapError(f"'{word}' lines must come before buckets and rules", cur.line)
            cur.i += 1
            header[word](cur, m)
        elif word == "choose_args":
            if not in_rules and not in_args:
                _add_buckets(m, raw_buckets, has_rules=False)
            in_args = True
            cur.i += 1
            _parse_choose_args(cur, m)
        elif in_args:
            raise CrushMapError(f"only choose_args sections may follow one (found "
                                f"'{word[:40]}')", cur.line)
        elif word == "rule":
            if not in_rules:
                _add_buckets(m, raw_buckets, has_rules=True)
                in_rules = True
            cur.i += 1
            _parse_rule(cur, m)
        elif in_rules:
            raise CrushMapError(f"buckets must be defined before rules (found '{word[:40]}')",
                                cur.line)
        else:
            raw_buckets.append(_parse_bucket(cur, m))
    if not in_rules and not in_args:
        _add_buckets(m, raw_buckets, has_rules=False)
    return m


def _bracketed(cur: _Cursor, what: str, item) -> list:
    """`[ a b c ]` (brackets separated by white space, as crushtool -d writes them)."""
    cur.expect("[", f" to open {what}")
    values = []
    while cur.peek() not in ("]", None):
        values.append(item())
    cur.expect("]", f" to close {what}")
    return values


def _parse_choose_args(cur: _Cursor, m: CrushMap) -> None:
    """`choose_args INDEX { { bucket_id -N  weight_set [ [ w ... ] ... ]  ids [ i ... ] } ... }`"""
    tok, index_line = cur.next("choose_args index")
    # an unsigned 64-bit index: a pool id, or 18446744073709551615 (Ceph's -1) for the default
    if not tok.isdigit() or len(tok) > 20 or int(tok) >= 1 << 64:
        raise CrushMapError(f"bad choose_args index '{tok[:40]}': expected 0..2^64-1",
                            index_line)
    index = int(tok)
    if index in m.choose_args:
        raise CrushMapError(f"choose_args {index} is defined twice", index_line)
    args: dict[int, cm.ChooseArg] = {}
    cur.expect("{", " after the choose_args index")
    while not cur.accept("}"):
        cur.expect("{", " to open a choose_args entry")
        line = cur.expect("bucket_id", " first in a choose_args entry")
        bucket_id = cur.number("bucket_id", -cm.MAX_BUCKETS, -1)
        bucket = m.buckets.get(bucket_id)
        if bucket is None:
            raise CrushMapError(f"choose_args for unknown bucket {bucket_id}", line)
        if bucket_id in args:
            raise CrushMapError(f"choose_args for bucket {bucket_id} given twice", line)
        weight_set: list[tuple[int, ...]] = []
        ids: tuple[int, ...] | None = None
        while not cur.accept("}"):
            word, line = cur.next("weight_set, ids or '}'")
            if word == "weight_set":
                rows = _bracketed(cur, "the weight_set",
                                  lambda: tuple(_bracketed(cur, "a weight_set row",
                                                           lambda: _weight(cur))))
                for row in rows:
                    if len(row) != len(bucket.items):
                        raise CrushMapError(f"weight_set row of {len(row)} weights for bucket "
                                            f"{bucket.name} of {len(bucket.items)} items", line)
                weight_set = rows
            elif word == "ids":
                ids = tuple(_bracketed(cur, "ids", lambda: cur.number("id", -(1 << 31),
                                                                         (1 << 31) - 1)))
                if len(ids) != len(bucket.items):
                    raise CrushMapError(f"{len(ids)} ids for bucket {bucket.name} of "
                                        f"{len(bucket.items)} items", line)
            else:
                raise CrushMapError(f"unknown choose_args field '{word[:40]}'", line)
        args[bucket_id] = cm.ChooseArg(tuple(weight_set), ids)
    m.choose_args[index] = args


def _parse_tunable(cur: _Cursor, m: CrushMap) -> None:
    line, name = cur.line, cur.name("tunable name")
    if name not in cm.TUNABLE_NAMES:
        raise CrushMapError(f"unknown tunable '{name}'", line)
    value = cur.number(f"tunable {name}", 0, _TUNABLE_MAX.get(name, INT32_MAX))
    m.tunables = m.tunables.replace(**{name: value})


def _parse_device(cur: _Cursor, m: CrushMap) -> None:
    line = cur.line
    dev_id = cur.number("device id", 0, cm.MAX_DEVICES - 1)
    name = cur.name("device name")
    device_class = cur.name("device class") if cur.accept("class") else None
    if dev_id in m.devices:
        raise CrushMapError(f"device id {dev_id} is defined twice", line)
    if name in cur.device_names:
        raise CrushMapError(f"device name '{name}' is defined twice", line)
    cur.device_names.add(name)
    m.devices[dev_id] = Device(dev_id, name, device_class)


def _parse_type(cur: _Cursor, m: CrushMap) -> None:
    line = cur.line
    type_id, name = cur.number("type id", 0, INT32_MAX), cur.name("type name")
    if type_id in m.types or name in m.types.values():
        raise CrushMapError(f"type {type_id} '{name}' is defined twice", line)
    m.types[type_id] = name


def _parse_bucket(cur: _Cursor, m: CrushMap) -> _RawBucket:
    """`TYPE NAME { id* alg ALG [hash H] item* }`, in that order, as crushtool wants it."""
    line, type_name = cur.line, cur.name("bucket type")
    if type_name not in m.types.values():
        raise CrushMapError(f"unknown bucket type '{type_name}' (declare it with 'type')", line)
    raw = _RawBucket(m.type_id(type_name), cur.name("bucket name"), line)
    cur.expect("{")
    while cur.peek() == "id":
        line = cur.expect("id")
        bucket_id = cur.number("bucket id", -cm.MAX_BUCKETS, -1)
        if cur.accept("class"):
            raw.class_ids.append((cur.name("device class"), bucket_id, line))
        else:
            raw.ids.append((bucket_id, line))
    cur.expect("alg", f" in bucket '{raw.name}'")
    alg, line = cur.next("bucket alg")
    if alg not in cm.ALG_BY_NAME:
        raise CrushMapError(f"unknown bucket alg '{alg[:40]}'", line)
    raw.alg = cm.ALG_BY_NAME[alg]
    if cur.accept("hash"):
        hash_name, line = cur.next("hash")
        if hash_name not in ("0", "rjenkins1"):
            raise CrushMapError(f"unsupported hash '{hash_name[:40]}': only 0 (rjenkins1)", line)
    while cur.peek() == "item":
        line = cur.expect("item")
        name = cur.name("item name")
        weight = _weight(cur) if cur.accept("weight") else None
        pos = cur.number("pos", 0, cm.MAX_BUCKET_SIZE - 1) if cur.accept("pos") else None
        raw.items.append(_RawItem(name, weight, pos, line))
    cur.expect("}", f" or 'item' in bucket '{raw.name}'")
    return raw


def _weight(cur: _Cursor) -> int:
    tok, line = cur.next("weight")
    try:
        weight = weight_from_text(tok)
    except ValueError as e:
        raise CrushMapError(str(e), line) from None
    if weight < 0:
        raise CrushMapError(f"weight {tok[:40]} is negative", line)
    return weight


def _parse_rule(cur: _Cursor, m: CrushMap) -> None:
    """`rule [NAME] { id|ruleset N type T min_size N max_size N step+ }`."""
    line = cur.line
    name = "" if cur.peek() == "{" else cur.name("rule name")
    cur.expect("{")
    if not (cur.accept("id") or cur.accept("ruleset")):
        cur.expect("id", f" in rule '{name}'")
    rule_id = cur.number("rule id", 0, cm.MAX_RULES - 1)
    cur.expect("type", f" in rule '{name}'")
    rule_type = _RULE_TYPE_BY_NAME.get(cur.peek() or "")
    if rule_type is None:
        rule_type = cur.number("rule type (replicated, erasure or a number)", 0, 255)
    else:
        cur.i += 1
    cur.expect("min_size", f" in rule '{name}'")
    min_size = cur.number("min_size", 0, 255)
    cur.expect("max_size", f" in rule '{name}'")
    max_size = cur.number("max_size", 0, 255)
    steps = [_parse_step(cur, m)]
    while cur.peek() == "step":
        steps.append(_parse_step(cur, m))
    cur.expect("}", f" or 'step' in rule '{name}'")
    if len(steps) > cm.MAX_RULE_STEPS:
        raise CrushMapError(f"rule '{name}' has more than {cm.MAX_RULE_STEPS} steps", line)
    if rule_id in m.rules:
        raise CrushMapError(f"rule id {rule_id} is defined twice", line)
    if name and any(r.name == name for r in m.rules.values()):
        raise CrushMapError(f"rule name '{name}' is defined twice", line)
    m.rules[rule_id] = Rule(rule_id, name, rule_type, min_size, max_size, tuple(steps))


def _parse_step(cur: _Cursor, m: CrushMap) -> Step:
    line = cur.expect("step")
    op = cur.next("step operation")[0]
    if op == "take":
        name = cur.name("item name")
        try:
            item = m.item_by_name(name)
        except KeyError:
            raise CrushMapError(f"step take: item '{name}' is not defined", line) from None
        if not cur.accept("class"):
            return Step(cm.OP_TAKE, item)
        device_class = cur.name("device class")
        _check_take_class(m, item, device_class, line)
        return Step(cm.OP_TAKE, item, 0, device_class)
    if op in ("choose", "chooseleaf"):
        mode = cur.next("firstn or indep")[0]
        if mode not in ("firstn", "indep"):
            raise CrushMapError(f"expected firstn or indep, found '{mode[:40]}'", line)
        num = cur.number("replica count", -INT32_MAX - 1, INT32_MAX)
        cur.expect("type")
        type_name = cur.name("type name")
        if type_name not in m.types.values():
            raise CrushMapError(f"type '{type_name}' is not defined", line)
        return Step(_CHOOSE_BY_WORDS[(op, mode)], num, m.type_id(type_name))
    if op in _SET_BY_NAME:
        return Step(_SET_BY_NAME[op], cur.number(op, 0, INT32_MAX))
    if op in ("emit", "noop"):
        return Step(cm.OP_EMIT if op == "emit" else cm.OP_NOOP)
    raise CrushMapError(f"unknown step '{op[:40]}'", line)


def _check_take_class(m: CrushMap, item: int, cls: str, line: int) -> None:
    where = f"step take {m.item_name(item)} class {cls}"
    if item >= 0:
        raise CrushMapError(f"{where}: a device has no device-class tree", line)
    if cls not in classes.class_order(m):
        raise CrushMapError(f"{where}: no device has class '{cls}'", line)
    if not any(c == cls for c, _ in m.buckets[item].class_ids):
        raise CrushMapError(f"{where}: no shadow tree (crushtool cannot build device-class trees "
                            "through uniform buckets)", line)


# --- buckets: ids, order, items, weights -----------------------------------------------------
def _add_buckets(m: CrushMap, raws: list[_RawBucket], has_rules: bool) -> None:
    """Add the buckets in the order crushtool adds them, then their device-class ids."""
    index: dict[str, int] = {}
    devs = {d.name: d.id for d in m.devices.values()}
    for k, raw in enumerate(raws):
        if raw.name in devs or raw.name in index:
            raise CrushMapError(f"bucket or device '{raw.name}' is already defined", raw.line)
        index[raw.name] = k
    deps = [_deps(raw, index, devs) for raw in raws]
    order = _creation_order(raws, deps)
    ids = _bucket_ids(raws, order)
    owner: dict[int, str] = {}
    for k in order:
        raw = raws[k]
        items = [_item(m, raw, it, devs[it.name] if it.name in devs else ids[index[it.name]],
                       owner) for it in raw.items]
        m.buckets[ids[k]] = Bucket(ids[k], raw.name, raw.type_id, raw.alg, cm.HASH_RJENKINS1,
                                   _placed(raw, items), _declared_class_ids(raw))
    _fill_class_ids(m, raws, has_rules)


def _deps(raw: _RawBucket, index: dict[str, int], devs: dict[str, int]) -> list[int]:
    deps = []
    for item in raw.items:
        if item.name == raw.name:
            raise CrushMapError(f"bucket '{raw.name}' contains itself", item.line)
        if item.name in index:
            deps.append(index[item.name])
        elif item.name not in devs:
            raise CrushMapError(f"item '{item.name}' in bucket '{raw.name}' is not defined",
                                item.line)
    return deps


def _creation_order(raws: list[_RawBucket], deps: list[list[int]]) -> list[int]:
    """crushtool's order: file order, except that for each bucket (in file order) naming a
    bucket defined further down, the slots at their two file positions are swapped. This
    reproduces crushtool on every map it accepts (checked on hundreds of random ones); where it
    leaves a bucket before one of its items (crushtool then fails) a topological order is used
    instead, and a cycle is an error."""
    order = list(range(len(raws)))
    for b in range(len(raws)):
        for d in deps[b]:
            if d > b:
                order[b], order[d] = order[d], order[b]
    where = {b: k for k, b in enumerate(order)}
    if all(where[d] < where[b] for b in order for d in deps[b]):
        return order
    state, order = [0] * len(raws), []  # state: 0 new, 1 on the current path, 2 done
    for start in range(len(raws)):
        stack = [(start, 0)] if state[start] == 0 else []
        while stack:
            b, k = stack.pop()
            state[b] = 1
            if k == len(deps[b]):
                state[b] = 2
                order.append(b)
                continue
            stack.append((b, k + 1))
            d = deps[b][k]
            if state[d] == 1:
                _cycle(raws, [n for n, _ in stack[[n for n, _ in stack].index(d):]])
            if state[d] == 0:
                stack.append((d, 0))
    return order


def _cycle(raws: list[_RawBucket], path: list[int]) -> None:
    """Refuse a cycle, naming the line of its forward reference (the likely mistake)."""
    edges = list(zip(path, path[1:] + path[:1], strict=True))
    b, d = next(((b, d) for b, d in edges if d > b), edges[-1])
    line = next(it.line for it in raws[b].items if it.name == raws[d].name)
    raise CrushMapError(f"buckets '{raws[b].name}' and '{raws[d].name}' contain each other "
                        "(a cycle)", line)


def _bucket_ids(raws: list[_RawBucket], order: list[int]) -> list[int]:
    """Declared ids (the last `id` line wins); the others get, in creation order, the first id
    from -1 down that no `id` line of any bucket names (crushtool reserves them all)."""
    reserved = {i for raw in raws for i, _ in raw.ids}
    reserved |= {i for raw in raws for _, i, _ in raw.class_ids}
    ids = [raw.ids[-1][0] if raw.ids else 0 for raw in raws]
    seen: dict[int, str] = {}
    for k, raw in enumerate(raws):
        if raw.ids and ids[k] in seen:
            raise CrushMapError(f"bucket id {ids[k]} is already used by '{seen[ids[k]]}'",
                                raw.ids[-1][1])
        seen[ids[k]] = raw.name
    free = -1
    for k in order:
        if not raws[k].ids:
            while free in reserved:
                free -= 1
            if free < -cm.MAX_BUCKETS:
                raise CrushMapError(f"no bucket id left for '{raws[k].name}'", raws[k].line)
            ids[k] = free
            reserved.add(free)
    return ids


def _item(m: CrushMap, raw: _RawBucket, item: _RawItem, item_id: int,
          owner: dict[int, str]) -> BucketItem:
    """One item with its weight: as written, else 1.0 for a device and the sum for a bucket."""
    if item_id in owner:
        raise CrushMapError(f"item '{item.name}' is already in bucket '{owner[item_id]}'",
                            item.line)
    owner[item_id] = raw.name
    weight = item.weight
    if weight is None:
        weight = cm.WEIGHT_ONE if item_id >= 0 else m.buckets[item_id].weight
    elif item_id >= 0 and weight > MAX_DEVICE_WEIGHT:
        raise CrushMapError(f"weight of device '{item.name}' is limited to 100", item.line)
    if raw.alg == cm.ALG_UNIFORM and weight == 0:
        raise CrushMapError(f"item '{item.name}' of uniform bucket '{raw.name}' has weight 0",
                            item.line)
    return BucketItem(item_id, weight)


def _placed(raw: _RawBucket, items: list[BucketItem]) -> tuple[BucketItem, ...]:
    """Items with `pos` go to that slot; the others fill the free slots in order."""
    if len(items) > cm.MAX_BUCKET_SIZE:
        raise CrushMapError(f"bucket '{raw.name}' has more than {cm.MAX_BUCKET_SIZE} items",
                            raw.line)
    if sum(it.weight for it in items) > cm.MAX_WEIGHT:
        raise CrushMapError(f"weight of bucket '{raw.name}' overflows 32 bits", raw.line)
    slots: list[BucketItem | None] = [None] * len(items)
    for item, src in zip(items, raw.items, strict=True):
        if raw.alg == cm.ALG_UNIFORM and item.weight != items[0].weight:
            raise CrushMapError(f"items of uniform bucket '{raw.name}' must all weigh the same",
                                src.line)
        if src.pos is not None and src.pos >= len(items):
            raise CrushMapError(f"item '{src.name}' has pos {src.pos} >= bucket size "
                                f"{len(items)}", src.line)
        if src.pos is not None and slots[src.pos] is not None:
            raise CrushMapError(f"item '{src.name}' has pos {src.pos}, which is taken", src.line)
        if src.pos is not None:
            slots[src.pos] = item
    free = iter([i for i, s in enumerate(slots) if s is None])
    for item, src in zip(items, raw.items, strict=True):
        if src.pos is None:
            slots[next(free)] = item
    return tuple(s for s in slots if s is not None)


def _declared_class_ids(raw: _RawBucket) -> tuple[tuple[str, int], ...]:
    declared: dict[str, int] = {}
    for cls, shadow_id, line in raw.class_ids:
        if cls in declared:
            raise CrushMapError(f"class {cls} is declared twice for bucket '{raw.name}'", line)
        declared[cls] = shadow_id
    return tuple(declared.items())


def _fill_class_ids(m: CrushMap, raws: list[_RawBucket], has_rules: bool) -> None:
    """Complete (or, without rules, drop) the `id -N class C` ids the way crushtool -c does."""
    seen: set[int] = set()
    for raw in raws:
        for cls, shadow_id, line in raw.class_ids:
            if shadow_id in m.buckets or shadow_id in seen:
                raise CrushMapError(f"id {shadow_id} class {cls} of bucket '{raw.name}' is "
                                    "already used", line)
            seen.add(shadow_id)
    full = classes.class_ids(m, has_rules)
    for bucket_id, bucket in m.buckets.items():
        m.buckets[bucket_id] = dataclasses.replace(bucket, class_ids=full.get(bucket_id, ()))


# --- formatter -------------------------------------------------------------------------------
def format(m: CrushMap) -> str:
    """The map as `crushtool -d` writes it, byte for byte: for a map that came from `parse()`
    and for one built in code alike (its `id -N class C` lines then show the shadow ids that
    crushtool would allocate, so compiling the text elsewhere keeps them)."""
    legacy = Tunables.legacy()
    out = ["# begin crush map"]
    out += [f"tunable {name} {getattr(m.tunables, name)}" for name in cm.TUNABLE_NAMES
            if getattr(m.tunables, name) != getattr(legacy, name)]
    out += ["", "# devices"]
    for dev in sorted(m.devices.values(), key=lambda d: d.id):
        cls = f" class {dev.device_class}" if dev.device_class else ""
        out.append(f"device {dev.id} {dev.name}{cls}")
    out += ["", "# types", *(f"type {tid} {m.types[tid]}" for tid in sorted(m.types))]
    out += ["", "# buckets"]
    class_ids = classes.class_ids(m)  # declared ones, plus those crushtool would allocate
    for bucket_id in _children_first(m):
        out += _format_bucket(m, m.buckets[bucket_id], class_ids.get(bucket_id, ()))
    out += ["", "# rules"]
    for rule_id in sorted(m.rules):
        out += _format_rule(m, m.rules[rule_id])
    if m.choose_args:
        out += ["", "# choose_args"]
        # crushtool keeps them by signed 64-bit index: the default set (-1) comes first
        for index in sorted(m.choose_args, key=lambda i: i - (1 << 64) if i >> 63 else i):
            out += _format_choose_args(index, m.choose_args[index])
    out += ["", "# end crush map"]
    return "\n".join(out) + "\n"


def _format_choose_args(index: int, args: dict[int, cm.ChooseArg]) -> list[str]:
    out = [f"choose_args {index} {{"]
    for bucket_id in sorted(args, reverse=True):
        arg = args[bucket_id]
        if not arg.weight_set and arg.ids is None:
            continue  # an entry with nothing in it changes nothing: crushtool drops it
        out += ["  {", f"    bucket_id {bucket_id}"]
        if arg.weight_set:
            out.append("    weight_set [")
            out += ["      [ " + " ".join(format_weight(w) for w in row) + " ]"
                    for row in arg.weight_set]
            out.append("    ]")
        if arg.ids is not None:
            out.append("    ids [ " + " ".join(str(i) for i in arg.ids) + " ]")
        out.append("  }")
    out.append("}")
    return out


def _children_first(m: CrushMap) -> list[int]:
    """Bucket ids from -1 down, each preceded by its descendants not yet written."""
    done: set[int] = set()
    order: list[int] = []
    for top in sorted(m.buckets, reverse=True):
        stack, active = [(top, 0)], {top}
        while stack:
            bucket_id, k = stack.pop()
            items = m.buckets[bucket_id].items
            while k < len(items) and (items[k].id not in m.buckets or items[k].id in done
                                      or items[k].id in active):  # `active`: survive a cycle
                k += 1
            if k < len(items):
                stack += [(bucket_id, k + 1), (items[k].id, 0)]
                active.add(items[k].id)
            elif bucket_id not in done:
                done.add(bucket_id)
                order.append(bucket_id)
    return order


def _format_bucket(m: CrushMap, b: Bucket, class_ids: tuple[tuple[str, int], ...]) -> list[str]:
    keep = "\t\t# do not change unnecessarily"
    lines = [f"{m.types.get(b.type_id, b.type_id)} {b.name} {{", f"\tid {b.id}{keep}"]
    lines += [f"\tid {shadow_id} class {cls}{keep}" for cls, shadow_id in class_ids]
    lines.append(f"\t# weight {format_weight(b.weight)}")
    comment = _ALG_COMMENT.get(b.alg, "").format(size=len(b.items))
    lines.append(f"\talg {cm.ALG_NAMES.get(b.alg, b.alg)}{comment}")
    lines.append(f"\thash {b.hash}\t# " + ("rjenkins1" if b.hash == 0 else "unknown"))
    with_pos = b.alg in (cm.ALG_UNIFORM, cm.ALG_TREE)
    for pos, item in enumerate(b.items):
        lines.append(f"\titem {m.item_name(item.id)} weight {format_weight(item.weight)}"
                     + (f" pos {pos}" if with_pos else ""))
    return [*lines, "}"]


def _format_rule(m: CrushMap, r: Rule) -> list[str]:
    return [f"rule {r.name} {{", f"\tid {r.id}", f"\ttype {cm.RULE_TYPE_NAMES.get(r.type, r.type)}",
            f"\tmin_size {r.min_size}", f"\tmax_size {r.max_size}",
            *(f"\tstep {_format_step(m, s)}" for s in r.steps), "}"]


def _format_step(m: CrushMap, s: Step) -> str:
    if s.op in cm.CHOOSE_OPS:
        return f"{cm.CHOOSE_OPS[s.op]} {s.arg1} type {m.types.get(s.arg2, s.arg2)}"
    if s.op in cm.SET_OPS:
        return f"{cm.SET_OPS[s.op]} {s.arg1}"
    if s.op == cm.OP_TAKE:
        return f"take {m.item_name(s.arg1)}" + (f" class {s.item_class}" if s.item_class else "")
    return {cm.OP_EMIT: "emit", cm.OP_NOOP: "noop"}.get(s.op, f"unknown op {s.op}")
