"""A pure-Python reference implementation of Ceph's CRUSH (pacific), for tests only.

A second, independent implementation of what rados_py/csrc does, written from Ceph's
src/crush/hash.c, mapper.c and builder.c and kept close to them (same names, same control flow)
so a reviewer can read the three side by side. C semantics are spelled out where Python differs:
uint32 wraparound, int64 division truncating toward zero, double -> uint32 conversion. It is
slow and simple on purpose. The crush_ln tables are parsed from rados_py/csrc/crush_ln_table.h,
so that data lives in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rados_py.crush import model as m

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
S64_MIN = -(1 << 63)
ITEM_NONE = 0x7FFFFFFF  # CRUSH_ITEM_NONE
ITEM_UNDEF = 0x7FFFFFFE  # CRUSH_ITEM_UNDEF
HASH_SEED = 1315423911


class UndefinedBehavior(Exception):
    """The input makes Ceph's C code read out of bounds; there is no reference answer."""


# ---- hashes (hash.c) ---------------------------------------------------------------------------


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """crush_hashmix: Robert Jenkins' 96-bit mix of three uint32 values."""
    a = ((a - b - c) & M32) ^ (c >> 13)
    b = ((b - c - a) & M32) ^ ((a << 8) & M32)
    c = ((c - a - b) & M32) ^ (b >> 13)
    a = ((a - b - c) & M32) ^ (c >> 12)
    b = ((b - c - a) & M32) ^ ((a << 16) & M32)
    c = ((c - a - b) & M32) ^ (b >> 5)
    a = ((a - b - c) & M32) ^ (c >> 3)
    b = ((b - c - a) & M32) ^ ((a << 10) & M32)
    c = ((c - a - b) & M32) ^ (b >> 15)
    return a, b, c


# crush_hash32_rjenkins1_N of hash.c: hash = seed ^ every input, then crush_hashmix(p, q, hash)
# for each pair "pq" below, in order; x = 231232 and y = 1232, and with one input b is a copy of a.
_MIX_ORDER = {n: [("abcdexy".index(p), "abcdexy".index(q)) for p, q in order.split()]
              for n, order in {1: "bx ya", 2: "ab xa by", 3: "ab cx ya bx yc",
                               4: "ab cd ax yb cx yd", 5: "ab cd ex ya bx yc dx ye"}.items()}


def hash32(*args: int) -> int:
    """crush_hash32_N(CRUSH_HASH_RJENKINS1, ...) of 1 to 5 inputs, masked to uint32 like C."""
    v = [a & M32 for a in args] + [0] * (5 - len(args)) + [231232, 1232]  # a..e, x, y
    h = HASH_SEED
    for a in v[:len(args)]:
        h ^= a
    if len(args) == 1:
        v[1] = v[0]
    for p, q in _MIX_ORDER[len(args)]:
        v[p], v[q], h = _mix(v[p], v[q], h)
    return h


hash32_1 = hash32_2 = hash32_3 = hash32_4 = hash32_5 = hash32


def str_hash_rjenkins(data: bytes) -> int:
    """ceph_str_hash_rjenkins: Jenkins' lookup2 over the bytes, the object-name hash."""
    a = b = 0x9E3779B9
    c = 0
    pos = 0
    while len(data) - pos >= 12:
        a = (a + int.from_bytes(data[pos:pos + 4], "little")) & M32
        b = (b + int.from_bytes(data[pos + 4:pos + 8], "little")) & M32
        c = (c + int.from_bytes(data[pos + 8:pos + 12], "little")) & M32
        a, b, c = _mix(a, b, c)
        pos += 12
    tail = data[pos:] + bytes(12)  # zero padding adds nothing
    a = (a + int.from_bytes(tail[0:4], "little")) & M32
    b = (b + int.from_bytes(tail[4:8], "little")) & M32
    # the low byte of c holds the length; the last three tail bytes go above it
    c = (c + (len(data) & M32) + (int.from_bytes(tail[8:11], "little") << 8)) & M32
    return _mix(a, b, c)[2]


def stable_mod(x: int, b: int, bmask: int) -> int:
    """ceph_stable_mod: x folded into b buckets so that growing b moves little."""
    return x & bmask if (x & bmask) < b else x & (bmask >> 1)


# ---- crush_ln (mapper.c) -----------------------------------------------------------------------

_LN_HEADER = Path(__file__).resolve().parents[1] / "rados_py" / "csrc" / "crush_ln_table.h"


def _load_ln_tables() -> dict[str, list[int]]:
    text = _LN_HEADER.read_text()
    found = re.findall(r"\b(\w+_TBL)\s*\[[^\]]*\]\s*=\s*\{(.*?)\};", text, re.S)
    tables = {name: [int(v, 16) for v in re.findall(r"0x([0-9a-fA-F]+)", body)]
              for name, body in found}
    if len(tables.get("RH_LH_TBL", ())) != 258 or len(tables.get("LL_TBL", ())) != 256:
        raise RuntimeError(f"cannot parse the crush_ln tables of {_LN_HEADER}")
    return tables


_TABLES = _load_ln_tables()
RH_LH_TBL: list[int] = _TABLES["RH_LH_TBL"]
LL_TBL: list[int] = _TABLES["LL_TBL"]


def crush_ln(xin: int) -> int:
    """2^44 * log2(xin + 1) in fixed point, for xin in 0..0xffff."""
    x = (xin + 1) & M32
    iexpon = 15
    if not x & 0x18000:  # normalize so that bit 15 or 16 is set
        bits = 16 - (x & 0x1FFFF).bit_length()  # __builtin_clz(x & 0x1FFFF) - 16
        x = (x << bits) & M32
        iexpon = 15 - bits
    index1 = (x >> 8) << 1
    rh = RH_LH_TBL[index1 - 256]  # ~ 2^56 / index1
    lh = RH_LH_TBL[index1 + 1 - 256]  # ~ 2^48 * log2(index1 / 256)
    xl64 = ((x * rh) & M64) >> 48  # ~ 2^48 * (2^15 + xf), xf < 2^8
    ll = LL_TBL[xl64 & 0xFF]  # ~ 2^48 * log2(1 + index2 / 2^15)
    return ((iexpon << 44) + (((lh + ll) & M64) >> 4)) & M64


def trunc_div(n: int, d: int) -> int:
    """C's integer division (truncates toward zero; Python's // floors)."""
    q = abs(n) // abs(d)
    return q if (n < 0) == (d < 0) else -q


# ---- builder.c: derived bucket data ------------------------------------------------------------


def _checked_sum(total: int, w: int) -> int:
    if total + w > M32:  # crush_addition_is_unsafe: Ceph refuses the bucket
        raise OverflowError("bucket weight overflows 32 bits")
    return total + w


def list_sums(weights: Sequence[int]) -> list[int]:
    """List buckets: sum_weights[i] = weights[0] + ... + weights[i]."""
    sums, total = [], 0
    for w in weights:
        total = _checked_sum(total, w)
        sums.append(total)
    return sums


def tree_depth(size: int) -> int:
    depth, t = (1, size - 1) if size else (0, 0)
    while t:
        t >>= 1
        depth += 1
    return depth


def _tree_height(n: int) -> int:
    return (n & -n).bit_length() - 1  # trailing zero bits


def _tree_parent(n: int) -> int:
    h = _tree_height(n)
    return n - (1 << h) if n & (1 << (h + 1)) else n + (1 << h)


def tree_node_weights(weights: Sequence[int]) -> list[int]:
    """Tree buckets: leaf i is node 2i+1, every inner node holds the sum of its subtree."""
    depth = tree_depth(len(weights))
    nodes = [0] * ((1 << depth) if weights else 0)
    for i, w in enumerate(weights):
        node = ((i + 1) << 1) - 1
        nodes[node] = w
        for _ in range(1, depth):
            node = _tree_parent(node)
            nodes[node] = _checked_sum(nodes[node], w)
    return nodes


def _double_to_u32(d: float) -> int:
    """(uint32_t)d as gcc does it on x86-64: cvttsd2si to 64 bits, keep the low 32."""
    if not math.isfinite(d) or abs(d) >= 2.0**63:
        return 0  # the "integer indefinite" 0x8000000000000000
    return int(d) & M32


def straw_lengths(weights: Sequence[int], straw_calc_version: int) -> list[int]:
    """Straw buckets: crush_calc_straw, both the buggy v0 and the fixed v1, in C doubles."""
    size = len(weights)
    list_sums(weights)  # Ceph refuses buckets whose weights overflow
    reverse = sorted(range(size), key=lambda i: weights[i])  # stable, like the insertion sort
    straws = [0] * size
    numleft, straw, wbelow, lastw = size, 1.0, 0.0, 0.0
    i = 0
    while i < size:
        wi = weights[reverse[i]]
        if wi == 0:  # zero weight items get 0 length straws
            straws[reverse[i]] = 0
            i += 1
            if straw_calc_version != 0:
                numleft -= 1
            continue
        straws[reverse[i]] = _double_to_u32(straw * 0x10000)
        i += 1
        if i == size:
            break
        prev, cur = weights[reverse[i - 1]], weights[reverse[i]]
        if straw_calc_version == 0:
            if cur == prev:  # v0: a run of equal weights shares one straw length
                continue
            wbelow += (float(prev) - lastw) * numleft
            for j in range(i, size):
                if weights[reverse[j]] != cur:
                    break
                numleft -= 1
        else:
            wbelow += (float(prev) - lastw) * numleft
            numleft -= 1
        wnext = float((numleft * (cur - prev)) & M32)  # int * uint32 is uint32 arithmetic
        pbelow = wbelow / (wbelow + wnext)
        straw *= math.pow(1.0 / pbelow, 1.0 / numleft)
        lastw = float(prev)
    return straws


# ---- the map -----------------------------------------------------------------------------------


@dataclass
class Bucket:
    id: int
    type: int
    alg: int
    hash: int
    items: list[int]
    weights: list[int]
    sums: list[int] = field(default_factory=list)  # list
    nodes: list[int] = field(default_factory=list)  # tree
    straws: list[int] = field(default_factory=list)  # straw


@dataclass
class Map:
    buckets: dict[int, Bucket]
    rules: dict[int, list[tuple[int, int, int]]]
    max_devices: int
    tunables: m.Tunables


def build(crush_map: m.CrushMap) -> Map:
    """What crushtool's compiler does with a map: derive each bucket's data from its weights.

    Raises OverflowError for a bucket whose weights do not fit 32 bits (Ceph refuses those)."""
    t = crush_map.tunables
    buckets: dict[int, Bucket] = {}
    for b in crush_map.buckets.values():
        rb = Bucket(b.id, b.type_id, b.alg, b.hash, [it.id for it in b.items],
                    [it.weight for it in b.items])
        if b.alg == m.ALG_LIST:
            rb.sums = list_sums(rb.weights)
        elif b.alg == m.ALG_TREE:
            rb.nodes = tree_node_weights(rb.weights)
        elif b.alg == m.ALG_STRAW:
            rb.straws = straw_lengths(rb.weights, t.straw_calc_version)
        elif b.alg == m.ALG_STRAW2:
            list_sums(rb.weights)
        buckets[b.id] = rb
    rules = {}
    for rule in crush_map.rules.values():
        if any(s.item_class is not None for s in rule.steps):
            raise NotImplementedError("device classes are not part of the reference")
        rules[rule.id] = [(s.op, s.arg1, s.arg2) for s in rule.steps]
    return Map(buckets, rules, crush_map.max_devices, t)


# ---- mapper.c ----------------------------------------------------------------------------------


@dataclass
class _Perm:
    """crush_work_bucket: the lazily computed permutation of a uniform bucket."""

    x: int = 0
    n: int = 0
    perm: list[int] = field(default_factory=list)


class _Call:
    """One crush_do_rule call: the map, reweights, the input x and the permutation state."""

    def __init__(self, cmap: Map, weight: Sequence[int], x: int):
        self.map = cmap
        self.weight = weight
        self.x = x & M32
        self.work: dict[int, _Perm] = {}  # bucket id -> state, fresh per call as in Ceph

    def _hash(self, b: Bucket, *args: int) -> int:
        # crush_hash32_*(bucket->hash, ...) returns 0 for an unknown hash type
        return hash32(*args) if b.hash == m.HASH_RJENKINS1 else 0

    def perm_choose(self, b: Bucket, r: int) -> int:
        size = len(b.items)
        st = self.work.get(b.id)
        if st is None:
            st = self.work[b.id] = _Perm(perm=[0] * size)
        pr = (r & M32) % size
        if st.x != self.x or st.n == 0:  # start a new permutation
            st.x = self.x
            if pr == 0:  # the common r=0 case needs one hash only
                s = self._hash(b, self.x, b.id, 0) % size
                st.perm[0] = s
                st.n = 0xFFFF  # magic: only perm[0] is valid
                return b.items[s]
            st.perm[:] = range(size)
            st.n = 0
        elif st.n == 0xFFFF:  # expand the r=0 shortcut into a partial permutation
            st.perm[1:] = range(1, size)
            st.perm[st.perm[0]] = 0
            st.n = 1
        while st.n <= pr:
            p = st.n
            if p < size - 1:
                i = self._hash(b, self.x, b.id, p) % (size - p)
                if i:
                    st.perm[p + i], st.perm[p] = st.perm[p], st.perm[p + i]
            st.n += 1
        return b.items[st.perm[pr]]

    def list_choose(self, b: Bucket, r: int) -> int:
        for i in range(len(b.items) - 1, -1, -1):
            w = ((self._hash(b, self.x, b.items[i], r, b.id) & 0xFFFF) * b.sums[i]) >> 16
            if w < b.weights[i]:
                return b.items[i]
        return b.items[0]

    def tree_choose(self, b: Bucket, r: int) -> int:
        n = len(b.nodes) >> 1  # the root
        while not n & 1:
            t = (self._hash(b, self.x, n, r, b.id) * b.nodes[n]) >> 32
            half = 1 << (_tree_height(n) - 1)
            n = n - half if t < b.nodes[n - half] else n + half
        return b.items[n >> 1]

    def straw_choose(self, b: Bucket, r: int) -> int:
        high, high_draw = 0, 0
        for i, item in enumerate(b.items):
            draw = (self._hash(b, self.x, item, r) & 0xFFFF) * b.straws[i]
            if i == 0 or draw > high_draw:
                high, high_draw = i, draw
        return b.items[high]

    def straw2_choose(self, b: Bucket, r: int) -> int:
        high, high_draw = 0, 0
        for i, item in enumerate(b.items):
            w = b.weights[i]
            if w:
                u = self._hash(b, self.x, item, r) & 0xFFFF
                ln = crush_ln(u) - 0x1000000000000  # <= 0
                draw = trunc_div(ln, w - (1 << 32) if w & 0x80000000 else w)  # (int)weight
            else:
                draw = S64_MIN
            if i == 0 or draw > high_draw:
                high, high_draw = i, draw
        return b.items[high]

    def bucket_choose(self, b: Bucket, r: int) -> int:
        if b.alg == m.ALG_STRAW2:
            return self.straw2_choose(b, r)
        if b.alg == m.ALG_UNIFORM:
            return self.perm_choose(b, r)
        if b.alg == m.ALG_LIST:
            return self.list_choose(b, r)
        if b.alg == m.ALG_TREE:
            return self.tree_choose(b, r)
        if b.alg == m.ALG_STRAW:
            return self.straw_choose(b, r)
        return b.items[0]  # unknown algorithm

    def is_out(self, item: int) -> bool:
        if item < 0:  # a bucket of type 0 chosen as a device
            raise UndefinedBehavior(f"is_out reads weight[{item}], out of bounds")
        if item >= len(self.weight):
            return True
        w = self.weight[item]
        if w >= 0x10000:
            return False
        if w == 0:
            return True
        return (hash32_2(self.x, item) & 0xFFFF) >= w

    def _type_of(self, item: int) -> int:
        return self.map.buckets[item].type if item < 0 else 0

    def choose_firstn(self, bucket: Bucket, numrep: int, type_: int, out: list[int],
                      outpos: int, out_size: int, tries: int, recurse_tries: int,
                      local_retries: int, local_fallback_retries: int, recurse_to_leaf: bool,
                      vary_r: int, stable: int, out2: list[int] | None, parent_r: int) -> int:
        """crush_choose_firstn: depth first; failed positions are dropped, the rest shift up."""
        count = out_size
        rep = 0 if stable else outpos
        while rep < numrep and count > 0:
            ftotal, skip_rep, item = 0, False, 0
            while True:  # retry_descent
                retry_descent = False
                in_ = bucket
                flocal = 0
                while True:  # retry_bucket
                    retry_bucket, collide, reject = False, False, False
                    r = rep + parent_r + ftotal
                    if not in_.items:
                        reject = True
                    else:
                        if (local_fallback_retries > 0 and flocal >= (len(in_.items) >> 1)
                                and flocal > local_fallback_retries):
                            item = self.perm_choose(in_, r)
                        else:
                            item = self.bucket_choose(in_, r)
                        if item >= self.map.max_devices:
                            skip_rep = True
                            break
                        itemtype = self._type_of(item)
                        if itemtype != type_:  # keep descending
                            if item >= 0 or item not in self.map.buckets:
                                skip_rep = True
                                break
                            in_ = self.map.buckets[item]
                            continue
                        collide = item in out[:outpos]
                        if not collide and recurse_to_leaf:
                            if item < 0:
                                sub_r = r >> (vary_r - 1) if vary_r else 0
                                got = self.choose_firstn(
                                    self.map.buckets[item], 1 if stable else outpos + 1, 0,
                                    out2 or [], outpos, count, recurse_tries, 0, local_retries,
                                    local_fallback_retries, False, vary_r, stable, None, sub_r)
                                reject = got <= outpos  # no leaf below it
                            elif out2 is not None:
                                out2[outpos] = item  # already a leaf
                        if not reject and not collide and itemtype == 0:
                            reject = self.is_out(item)
                    if reject or collide:
                        ftotal += 1
                        flocal += 1
                        if collide and flocal <= local_retries:
                            retry_bucket = True  # retry locally a few times
                        elif (local_fallback_retries > 0
                              and flocal <= len(in_.items) + local_fallback_retries):
                            retry_bucket = True  # exhaustive bucket search
                        elif ftotal < tries:
                            retry_descent = True  # then retry descent
                        else:
                            skip_rep = True  # else give up
                    if not retry_bucket:
                        break
                if not retry_descent:
                    break
            rep += 1
            if skip_rep:
                continue
            out[outpos] = item
            outpos += 1
            count -= 1
        return outpos

    def choose_indep(self, bucket: Bucket, left: int, numrep: int, type_: int, out: list[int],
                     outpos: int, tries: int, recurse_tries: int, recurse_to_leaf: bool,
                     out2: list[int] | None, parent_r: int) -> None:
        """crush_choose_indep: breadth first; a failed position stays ITEM_NONE in place."""
        endpos = outpos + left
        for rep in range(outpos, endpos):
            out[rep] = ITEM_UNDEF
            if out2 is not None:
                out2[rep] = ITEM_UNDEF
        ftotal = 0
        while left > 0 and ftotal < tries:
            for rep in range(outpos, endpos):
                if out[rep] != ITEM_UNDEF:
                    continue
                in_ = bucket
                while True:
                    r = rep + parent_r
                    if in_.alg == m.ALG_UNIFORM and len(in_.items) % numrep == 0:
                        r += (numrep + 1) * ftotal
                    else:
                        r += numrep * ftotal
                    if not in_.items:
                        break
                    item = self.bucket_choose(in_, r)
                    usable = item < self.map.max_devices
                    itemtype = self._type_of(item) if usable else 0
                    if usable and itemtype != type_:  # keep descending?
                        usable = item < 0 and item in self.map.buckets
                        if usable:
                            in_ = self.map.buckets[item]
                            continue
                    if not usable:  # bad item: this position stays empty
                        out[rep] = ITEM_NONE
                        if out2 is not None:
                            out2[rep] = ITEM_NONE
                        left -= 1
                        break
                    if item in out[outpos:endpos]:  # collision
                        break
                    if recurse_to_leaf and out2 is not None:
                        if item < 0:
                            self.choose_indep(self.map.buckets[item], 1, numrep, 0, out2, rep,
                                              recurse_tries, 0, False, None, r)
                            if out2[rep] == ITEM_NONE:  # placed nothing; no leaf
                                break
                        else:
                            out2[rep] = item  # already a leaf
                    if itemtype == 0 and self.is_out(item):
                        break
                    out[rep] = item
                    left -= 1
                    break
            ftotal += 1
        for rep in range(outpos, endpos):
            if out[rep] == ITEM_UNDEF:
                out[rep] = ITEM_NONE
            if out2 is not None and out2[rep] == ITEM_UNDEF:
                out2[rep] = ITEM_NONE


def weight_list(cmap: Map, weights: Mapping[int, int] | Sequence[int] | None) -> list[int]:
    """16.16 reweight per device id; None is every device in, a mapping overrides some."""
    if weights is None:
        return [0x10000] * cmap.max_devices
    if isinstance(weights, Mapping):
        vec = [0x10000] * cmap.max_devices
        for osd, w in weights.items():
            if 0 <= osd < len(vec):
                vec[osd] = w
        return vec
    return list(weights)


def do_rule(crush_map: m.CrushMap | Map, rule_id: int, x: int, result_max: int,
            weights: Mapping[int, int] | Sequence[int] | None = None) -> list[int]:
    """crush_do_rule: run the steps of rule `rule_id` for input x; at most result_max items."""
    cmap = crush_map if isinstance(crush_map, Map) else build(crush_map)
    call = _Call(cmap, weight_list(cmap, weights), x)
    t = cmap.tunables
    choose_tries = t.choose_total_tries + 1  # the tunable counts retries, not tries
    choose_leaf_tries = 0
    local_retries, local_fallback_retries = t.choose_local_tries, t.choose_local_fallback_tries
    vary_r, stable = t.chooseleaf_vary_r, t.chooseleaf_stable
    result: list[int] = []
    w, o, c = [0] * result_max, [0] * result_max, [0] * result_max  # C's scratch a, b, c
    wsize = 0
    for op, arg1, arg2 in cmap.rules[rule_id]:
        if op == m.OP_TAKE:
            if 0 <= arg1 < cmap.max_devices or (arg1 < 0 and arg1 in cmap.buckets):
                w[0] = arg1
                wsize = 1
        elif op == m.OP_SET_CHOOSE_TRIES and arg1 > 0:
            choose_tries = arg1
        elif op == m.OP_SET_CHOOSELEAF_TRIES and arg1 > 0:
            choose_leaf_tries = arg1
        elif op == m.OP_SET_CHOOSE_LOCAL_TRIES and arg1 >= 0:
            local_retries = arg1
        elif op == m.OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES and arg1 >= 0:
            local_fallback_retries = arg1
        elif op == m.OP_SET_CHOOSELEAF_VARY_R and arg1 >= 0:
            vary_r = arg1
        elif op == m.OP_SET_CHOOSELEAF_STABLE and arg1 >= 0:
            stable = arg1
        elif op in m.CHOOSE_OPS and wsize:
            firstn = op in (m.OP_CHOOSE_FIRSTN, m.OP_CHOOSELEAF_FIRSTN)
            leaf = op in (m.OP_CHOOSELEAF_FIRSTN, m.OP_CHOOSELEAF_INDEP)
            osize = 0
            for i in range(wsize):
                numrep = arg1 if arg1 > 0 else arg1 + result_max  # <= 0: relative to result_max
                bucket = cmap.buckets.get(w[i]) if w[i] < 0 else None
                if numrep <= 0 or bucket is None:  # w[i] may be a device or ITEM_NONE
                    continue
                room = result_max - osize
                out, out2 = [0] * room, [0] * room  # o + osize and c + osize in C
                if firstn:
                    if choose_leaf_tries:
                        recurse_tries = choose_leaf_tries
                    elif t.chooseleaf_descend_once:
                        recurse_tries = 1
                    else:
                        recurse_tries = choose_tries
                    n = call.choose_firstn(bucket, numrep, arg2, out, 0, room, choose_tries,
                                           recurse_tries, local_retries, local_fallback_retries,
                                           leaf, vary_r, stable, out2, 0)
                else:
                    n = min(numrep, room)
                    call.choose_indep(bucket, n, numrep, arg2, out, 0, choose_tries,
                                      choose_leaf_tries or 1, leaf, out2, 0)
                o[osize:osize + n] = out[:n]
                c[osize:osize + n] = out2[:n]
                osize += n
            if leaf:  # the leaves are the output
                o[:osize] = c[:osize]
            w, o = o, w
            wsize = osize
        elif op == m.OP_EMIT:
            result.extend(w[:min(wsize, result_max - len(result))])
            wsize = 0
    return result
