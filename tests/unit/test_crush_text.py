"""Text crushmaps: parse() accepts what crushtool accepts and builds what it compiles; format()
writes what `crushtool -d` writes; bad input is a CrushMapError naming its line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rados_py.crush import classes, text
from rados_py.crush.model import (
    ALG_NAMES,
    OP_CHOOSELEAF_FIRSTN,
    OP_EMIT,
    OP_TAKE,
    TUNABLE_NAMES,
    Bucket,
    BucketItem,
    CrushMap,
    Device,
    Rule,
    Step,
    Tunables,
)
from rados_py.crush.validate import validate_map
from rados_py.errors import CrushMapError
from tests.vectors import crushtool_compile, random_map_text, random_weight, vectors_dir

SAMPLES = ("a_flat", "b_hosts")


def sample(name: str) -> str:
    return (vectors_dir() / f"{name}.txt").read_text()


def canonical(m: CrushMap) -> CrushMap:
    """The map after one trip through the text format: weights as printed (3 decimals)."""
    return text.parse(text.format(m))


def assert_matches_crushtool(src: str) -> None:
    """format(parse(src)) is `crushtool -d`, and ids, weights, shadows, takes and tunables are
    those of `crushtool --dump`."""
    compiled = crushtool_compile(src)
    assert not isinstance(compiled, str), f"crushtool refused the map: {compiled}\n{src}"
    dump, decompiled = compiled
    m = text.parse(src)
    assert text.format(m) == decompiled
    buckets = {**m.buckets, **classes.shadow_buckets(m)}
    ours = {b.id: (b.name, b.type_id, b.weight, ALG_NAMES[b.alg],
                   [(it.id, it.weight) for it in b.items]) for b in buckets.values()}
    theirs = {b["id"]: (b["name"], b["type_id"], b["weight"], b["alg"],
                        [(it["id"], it["weight"]) for it in b["items"]]) for b in dump["buckets"]}
    assert ours == theirs
    devices = {d["id"]: d["name"] for d in dump["devices"]}  # gaps show as "deviceN"
    assert {i: n for i, n in devices.items() if n != f"device{i}"} == {
        i: d.name for i, d in m.devices.items()}
    for rule in dump["rules"]:
        steps = m.rules[rule["rule_id"]].steps
        for ours_step, their_step in zip(steps, rule["steps"], strict=True):
            if their_step.get("op") == "take":
                taken = ours_step.arg1 if ours_step.item_class is None else \
                    classes.resolve_take(m, ours_step.arg1, ours_step.item_class)
                assert taken == their_step["item"]
    assert {n: dump["tunables"][n] for n in TUNABLE_NAMES} == dataclasses.asdict(m.tunables)


# --- the shared sample maps ------------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLES)
def test_sample_maps_match_the_committed_dumps(name: str) -> None:
    """Runs without crushtool: ids, 16.16 weights, rules and tunables of the .dump.json files."""
    m = text.parse(sample(name))
    dump = json.loads((vectors_dir() / f"{name}.dump.json").read_text())
    for b in dump["buckets"]:
        ours = m.buckets[b["id"]]
        assert (ours.name, ours.type_id, ours.weight) == (b["name"], b["type_id"], b["weight"])
        assert [(it.id, it.weight) for it in ours.items] == [(it["id"], it["weight"])
                                                             for it in b["items"]]
    for r in dump["rules"]:
        rule = m.rules[r["rule_id"]]
        assert (rule.name, rule.type, rule.min_size, rule.max_size) == (
            r["rule_name"], r["type"], r["min_size"], r["max_size"])
        assert rule.steps[0].arg1 == r["steps"][0]["item"]
    assert dataclasses.asdict(m.tunables) == {n: dump["tunables"][n] for n in TUNABLE_NAMES}


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_maps_format_like_crushtool_d(name: str) -> None:
    assert_matches_crushtool(sample(name))


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_maps_round_trip(name: str) -> None:
    m = text.parse(sample(name))
    assert text.parse(text.format(m)) == m
    assert text.format(m) == sample(name)  # the samples are crushtool -d output themselves


# --- random maps against crushtool -----------------------------------------------------------
@pytest.mark.parametrize("seed", range(30))
def test_random_maps_match_crushtool(seed: int) -> None:
    assert_matches_crushtool(random_map_text(seed))


@pytest.mark.parametrize("seed", range(30))
def test_random_maps_round_trip(seed: int) -> None:
    once = canonical(text.parse(random_map_text(seed)))
    assert canonical(once) == once
    assert text.format(canonical(once)) == text.format(once)
    validate_map(once)


def test_weights_convert_like_crushtool() -> None:
    """Hundreds of weights written every which way, in one map, against crushtool --dump."""
    rng = random.Random(7)
    devices = [random_weight(rng) for _ in range(240)]
    hosts = [f"{rng.uniform(0, 120):.{rng.randint(0, 9)}f}" for _ in range(80)]
    lines = ["type 0 osd", "type 1 host", "type 2 root"]
    lines += [f"device {i} osd.{i}" for i in range(240)]
    lines += [f"host h{h} {{ id {-2 - h} alg straw2 "
              + " ".join(f"item osd.{i} weight {devices[i]}" for i in range(3 * h, 3 * h + 3))
              + " }" for h in range(80)]
    lines.append("root r { id -1 alg straw2 "
                 + " ".join(f"item h{h} weight {w}" for h, w in enumerate(hosts)) + " }")
    src = "\n".join(lines) + "\n"
    assert_matches_crushtool(src)
    m = text.parse(src)
    for h in range(80):
        assert [it.weight for it in m.buckets[-2 - h].items] == [
            text.weight_from_text(w) for w in devices[3 * h:3 * h + 3]]


@pytest.mark.parametrize(("written", "weight"), [
    ("1", 65536), ("1.0", 65536), ("1.", 65536), (".5", 32768), ("+1", 65536), ("1e2", 6553600),
    ("1.2", 78643), ("0.333333", 21845), ("0.99999999", 65536), ("0.9999999", 65535),
    ("00001.5", 98304), ("0.0000153", 1), ("0.0000152", 0), ("-0.0000152", 0), ("1e-400", 0),
    ("32767.998", 2147483520), ("0." + "0" * 5000 + "1", 0), ("5e-1", 32768)])
def test_weight_from_text(written: str, weight: int) -> None:
    assert text.weight_from_text(written) == weight


@pytest.mark.parametrize("written", ["32768", "1e30", "1" * 5000, "abc", "1,5", "inf", "nan",
                                     "0x10", "1e", ".", ".e1", "--1", "1e999999999999"])
def test_weight_from_text_refuses(written: str) -> None:
    with pytest.raises(ValueError):
        text.weight_from_text(written)


@pytest.mark.parametrize(("weight", "printed"), [
    (65536, "1.000"), (78643, "1.200"), (21845, "0.333"), (4096, "0.062"), (12288, "0.188"),
    (16781313, "256.062"),  # printed through a float32: the double would say 256.063
    (0, "0.000"), (1, "0.000"), (2147483647, "32768.000")])
def test_format_weight_like_crushtool(weight: int, printed: str) -> None:
    assert text.format_weight(weight) == printed


# --- tunables ---------------------------------------------------------------------------------
MINI = """device 0 osd.0
type 0 osd
type 1 root
root default { id -1 alg straw2 item osd.0 }
"""


def test_no_tunable_lines_means_legacy_tunables() -> None:
    m = text.parse(MINI)
    assert m.tunables == Tunables.legacy()
    assert "tunable" not in text.format(m)


def test_unspecified_tunables_stay_legacy_and_only_changed_ones_are_written() -> None:
    m = text.parse("tunable choose_total_tries 50\ntunable choose_local_tries 2\n" + MINI)
    assert m.tunables == Tunables.legacy().replace(choose_total_tries=50)
    assert text.format(m).splitlines()[:3] == ["# begin crush map",
                                               "tunable choose_total_tries 50", ""]


def test_optimal_tunables_are_all_written() -> None:
    m = text.parse(MINI)
    m.tunables = Tunables.optimal()
    written = [line for line in text.format(m).splitlines() if line.startswith("tunable")]
    assert [line.split()[1] for line in written] == list(TUNABLE_NAMES)


# --- syntax crushtool accepts ----------------------------------------------------------------
def test_free_layout_comments_and_alternative_spellings() -> None:
    one_line = ("tunable choose_total_tries 50 device 0 osd.0 # c\ndevice 1 osd.1 type 0 osd "
                "type 1 root root default{id -1 alg straw2 hash rjenkins1 item osd.0 weight 1 "
                "item osd.1}rule {ruleset 3 type erasure min_size 1 max_size 10 step take default "
                "step choose indep 0 type osd step emit}")
    m = text.parse(one_line)
    assert m.rules[3].name == "" and m.rules[3].type == 3
    assert [it.weight for it in m.buckets[-1].items] == [65536, 65536]
    assert text.format(m).count("rule  {") == 1


def test_items_without_weight_and_forward_references() -> None:
    m = text.parse("""device 0 osd.0
device 1 osd.1
type 0 osd
type 1 host
type 2 root
root top { alg straw2 item h }            # h is defined below: crushtool accepts this
host h { alg straw2 item osd.0 weight 1.5 item osd.1 }
""")
    assert m.item_by_name("h") == -1 and m.item_by_name("top") == -2  # crushtool's ids
    assert m.buckets[-2].items[0].weight == 65536 * 5 // 2


def test_explicit_bucket_weight_is_kept() -> None:
    m = text.parse(MINI.replace("root default { id -1 alg straw2 item osd.0 }",
                                "root h { id -2 alg straw2 item osd.0 }\n"
                                "root default { id -1 alg straw2 item h weight 7 }"))
    assert m.buckets[-1].items[0].weight == 7 * 65536 != m.buckets[-2].weight


def test_pos_places_items() -> None:
    m = text.parse("""device 0 osd.0
device 1 osd.1
device 2 osd.2
type 0 osd
type 1 host
host h { id -1 alg tree item osd.0 item osd.1 pos 0 item osd.2 }
""")
    assert [it.id for it in m.buckets[-1].items] == [1, 0, 2]
    assert "\titem osd.1 weight 1.000 pos 0\n" in text.format(m)


def test_uniform_list_and_tree_buckets_are_written_like_crushtool() -> None:
    src = """device 0 osd.0
device 1 osd.1
device 2 osd.2
type 0 osd
type 1 host
type 2 root
host u { id -2 alg uniform item osd.0 weight 2 }
host l { id -3 alg list item osd.1 }
host t { id -4 alg tree item osd.2 weight 0.5 }
root r { id -1 alg straw item u item l item t }
"""
    out = text.format(text.parse(src))
    assert "\talg uniform\t# do not change bucket size (1) unnecessarily\n" in out
    assert "\talg list\t# add new items at the end; do not change order unnecessarily\n" in out
    assert "\titem osd.2 weight 0.500 pos 0\n" in out
    assert_matches_crushtool(src)


def test_class_ids_only_exist_with_rules_like_crushtool() -> None:
    src = """device 0 osd.0 class ssd
type 0 osd
type 1 root
root default { id -1 id -5 class ssd alg straw2 item osd.0 }
"""
    assert text.parse(src).buckets[-1].class_ids == ()  # crushtool -c drops them
    rule = "rule r { id 0 type replicated min_size 1 max_size 10 step take default step emit }"
    assert text.parse(src + rule).buckets[-1].class_ids == (("ssd", -5),)
    assert_matches_crushtool(src)
    assert_matches_crushtool(src + rule)


def test_format_of_class_take_and_set_steps() -> None:
    src = """device 0 osd.0 class ssd
type 0 osd
type 1 root
root default { id -1 alg straw2 item osd.0 }
rule r { id 0 type replicated min_size 1 max_size 10 step set_choose_tries 100
step set_chooseleaf_vary_r 1 step take default class ssd step chooseleaf firstn 0 type osd
step emit }
"""
    m = text.parse(src)
    assert m.rules[0].steps[2].op == OP_TAKE and m.rules[0].steps[2].item_class == "ssd"
    assert m.rules[0].steps[3].op == OP_CHOOSELEAF_FIRSTN and m.rules[0].steps[4].op == OP_EMIT
    assert "\tstep take default class ssd\n" in text.format(m)
    assert_matches_crushtool(src)


def test_a_map_built_in_code_formats_like_crushtool() -> None:
    """No text behind it: default (optimal) tunables, no class ids given: format() writes the
    ids crushtool allocates, so compiling and decompiling the text gives the same text."""
    m = CrushMap(types={0: "osd", 1: "host", 2: "root"})
    m.devices = {i: Device(i, f"osd.{i}", "ssd" if i % 2 else "hdd") for i in range(4)}
    m.buckets[-2] = Bucket(-2, "h0", 1, items=(BucketItem(0, 65536), BucketItem(1, 78643)))
    m.buckets[-3] = Bucket(-3, "h1", 1, items=(BucketItem(2, 65536), BucketItem(3, 21845)))
    m.buckets[-1] = Bucket(-1, "default", 2, items=(BucketItem(-2, 144179),
                                                    BucketItem(-3, 87381)))
    m.rules[0] = Rule(0, "ssd_rule", steps=(Step(OP_TAKE, -1, 0, "ssd"),
                                            Step(OP_CHOOSELEAF_FIRSTN, 0, 1), Step(OP_EMIT)))
    written = text.format(m)
    assert "\tid -4 class hdd\t\t# do not change unnecessarily\n" in written
    compiled = crushtool_compile(written)
    assert not isinstance(compiled, str), compiled
    assert compiled[1] == written
    assert canonical(canonical(m)) == canonical(m)
    assert text.parse(written).buckets[-1].class_ids == (("hdd", -6), ("ssd", -9))


# --- errors ----------------------------------------------------------------------------------
BASE = """# begin crush map
tunable choose_total_tries 50
device 0 osd.0 class ssd
device 1 osd.1 class hdd
device 2 osd.2
type 0 osd
type 1 host
type 2 root
host h0 {
\tid -2
\talg straw2
\thash 0
\titem osd.0 weight 1.0
\titem osd.1 weight 2.0
}
host h1 {
\tid -3
\talg straw2
\titem osd.2
}
root default {
\tid -1
\talg straw2
\titem h0
\titem h1
}
rule r0 {
\tid 0
\ttype replicated
\tmin_size 1
\tmax_size 10
\tstep take default
\tstep chooseleaf firstn 0 type host
\tstep emit
}
"""


def with_line(n: int, replacement: str) -> str:
    lines = BASE.splitlines()
    lines[n - 1] = replacement
    return "\n".join(lines) + "\n"


BAD = [  # (line, replacement, expected line, words in the message)
    (2, "tunable bogus 1", 2, "unknown tunable"),
    (2, "tunable chooseleaf_descend_once 2", 2, "out of range"),
    (2, "tunable choose_total_tries -1", 2, "non-negative"),
    (2, "tunable choose_total_tries 99999999999999999999999", 2, "out of range"),
    (3, "device x osd.0", 3, "device id"),
    (3, "device 0 osd~0", 3, "bad device name"),
    (5, "device 1 osd.2", 5, "defined twice"),
    (5, "device 2 osd.1", 5, "defined twice"),
    (5, "device 1048576 osd.2", 5, "out of range"),
    (8, "type 1 root", 8, "defined twice"),
    (9, "rack h0 {", 9, "unknown bucket type"),
    (10, "\tid 2", 10, "out of range"),
    (11, "\talg straw3", 11, "unknown bucket alg"),
    (11, "\tstraw2", 11, "expected 'alg'"),
    (12, "\thash 1", 12, "unsupported hash"),
    (13, "\titem osd.9 weight 1.0", 13, "not defined"),
    (13, "\titem osd.0 weight -1", 13, "negative"),
    (13, "\titem osd.0 weight 101", 13, "limited to 100"),
    (13, "\titem osd.0 weight 1e9", 13, "too large"),
    (13, "\titem osd.0 weight abc", 13, "bad weight"),
    (13, "\titem osd.0 weight 1,5", 13, "bad weight"),
    (13, "\titem osd.0 pos 0 weight 1", 13, "expected '}'"),
    (13, "\titem default", 13, "each other"),
    (14, "\titem osd.0 weight 2.0", 14, "already in bucket"),
    (14, "\titem osd.1 weight 2.0 pos 5", 14, "pos 5"),
    (16, "host h0 {", 16, "already defined"),
    (17, "\tid -2", 17, "already used"),
    (19, "\titem osd.0", 19, "already in bucket 'h0'"),
    (24, "\titem nosuch", 24, "not defined"),
    (24, "\titem default", 24, "contains itself"),
    (25, "\titem h0", 25, "already in bucket"),
    (15, "", 16, "expected '}'"),
    (28, "\tid 256", 28, "out of range"),
    (28, "\tname r0", 28, "expected 'id'"),
    (29, "\ttype foo", 29, "rule type"),
    (30, "\tmin_size 300", 30, "out of range"),
    (31, "\tstep emit", 31, "expected 'max_size'"),
    (32, "\tstep take nosuch", 32, "not defined"),
    (32, "\tstep take default class nvme", 32, "no device has class"),
    (32, "\tstep take osd.0 class ssd", 32, "a device"),
    (33, "\tstep chooseleaf firstn 0 type rack", 33, "type 'rack' is not defined"),
    (33, "\tstep chooseleaf sometimes 0 type host", 33, "firstn or indep"),
    (33, "\tstep pick 3", 33, "unknown step"),
    (33, "\tstep set_choose_tries x", 33, "set_choose_tries"),
    (33, "\tstep chooseleaf firstn 2147483648 type host", 33, "out of range"),
    (35, "}\ndevice 3 osd.3", 36, "must come before"),
    (35, "}\nhost h9 { id -9 alg straw2 }", 36, "before rules"),
    (35, "}\nchoose_args 0 {", 36, "unexpected end of map"),
    (35, "}\nchoose_args 0 { }\nrule r9 { id 9 }", 37, "only choose_args sections may follow"),
    (35, "}\nchoose_args 0 {\n{ bucket_id -9 } }", 37, "unknown bucket -9"),
    (35, "}\nchoose_args 0 {\n{ bucket_id -1 ids [ 1 ] } }", 37, "1 ids for bucket"),
    (35, "}\nchoose_args 0 {\n{ bucket_id -1 weight_set [ [ 1 ] ] } }", 37, "weight_set row"),
    (35, "}\nchoose_args x {", 36, "bad choose_args index"),
    (35, "}\nchoose_args 0 {\n{ bucket_id -1 frob } }", 37, "unknown choose_args field"),
    (35, "}\nrule r0 { id 1 type replicated min_size 1 max_size 10 step emit }", 36, "twice"),
    (35, "}\nrule r1 { id 0 type replicated min_size 1 max_size 10 step emit }", 36, "twice"),
    (35, "}\n}", 36, "found '}'"),
    (27, "rule r0 {\n}", 28, "expected 'id'"),
    (26, "}\nrule r0 {", 28, "expected 'id'"),
]


@pytest.mark.parametrize(("line", "replacement", "expected", "words"), BAD)
def test_bad_input_names_its_line(line: int, replacement: str, expected: int,
                                  words: str) -> None:
    with pytest.raises(CrushMapError) as err:
        text.parse(with_line(line, replacement))
    assert err.value.line == expected, str(err.value)
    assert f"line {expected}:" in str(err.value)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_the_base_of_the_error_cases_is_valid() -> None:
    validate_map(text.parse(BASE))
    assert_matches_crushtool(BASE)


@pytest.mark.parametrize(("src", "line", "words"), [
    ("", None, None), ("   \n# only a comment\n", None, None),
    ("device 0 osd.0\ntype 0 osd\ntype 1 host\nhost h { id -1 alg uniform item osd.0 weight 0 }",
     4, "weight 0"),
    ("device 0 osd.0\ndevice 1 osd.1\ntype 0 osd\ntype 1 host\n"
     "host h { id -1 alg uniform item osd.0 weight 1\nitem osd.1 weight 2 }", 6, "weigh the same"),
    ("type 0 osd\ntype 1 host\ntype 2 root\nhost a { id -1 alg straw2 }\n"
     "root r { id -2 alg straw2 item a weight 20000 item a2 }", 5, "not defined"),
    ("type 0 osd\ntype 1 host\ntype 2 root\nhost a { id -1 alg straw2 }\nhost b { id -3 alg "
     "straw2 }\nroot r { id -2 alg straw2 item a weight 20000 item b weight 20000 }", 6,
     "overflows"),
    ("type 0 osd\ntype 1 host\nhost a { id -1 id -1 class ssd alg straw2 }", 3, "already used"),
    ("type 0 osd\ntype 1 host\nhost a { id -1 id -2 class ssd id -3 class ssd alg straw2 }", 3,
     "declared twice"),
    ("device 0 osd.0\ntype 0 osd\ntype 1 host\ntype 2 root\nhost a { alg straw2 item b }\n"
     "host b { alg straw2 item a }\n", 5, "each other"),
])
def test_whole_map_cases(src: str, line: int | None, words: str | None) -> None:
    if words is None:
        assert text.parse(src) == CrushMap(tunables=Tunables.legacy())
        return
    with pytest.raises(CrushMapError) as err:
        text.parse(src)
    assert (err.value.line, words in str(err.value)) == (line, True), str(err.value)


def test_non_text_is_refused() -> None:
    with pytest.raises(CrushMapError):
        text.parse(b"device 0 osd.0")  # type: ignore[arg-type]


# --- fuzz: only CrushMapError, never a traceback or a hang -----------------------------------
VOCABULARY = sorted(set(re.findall(r"[{}]|[^\s{}]+", BASE + sample("b_hosts"))) | {
    "class", "ssd", "uniform", "tree", "list", "straw", "pos", "weight", "-1", "0", "1e9", "#",
    "choose_args", "ruleset", "indep", "set_choose_tries", "1.5", "-0", "id", "osd.99", "~"})


def _mutate(src: str, edits: list[tuple[int, int, int, str]]) -> str:
    tokens = re.findall(r"\s+|[^\s]+", src)
    for kind, at, length, word in edits:
        at %= max(1, len(tokens))
        if kind == 0:
            del tokens[at:at + length]
        elif kind == 1:
            tokens.insert(at, f" {word} ")
        elif kind == 2:
            tokens[at:at + 1] = [word]
        else:
            tokens[at:at] = tokens[at:at + length]
    return "".join(tokens)


def _parses_or_refuses(src: str) -> None:
    try:
        m = text.parse(src)
    except CrushMapError as e:
        assert e.line is None or 1 <= e.line <= max(1, len(src.splitlines()))
        assert "\n" not in str(e)
        return
    again = canonical(m)  # whatever parses can be written and read back
    assert canonical(again) == again
    with contextlib.suppress(CrushMapError):
        validate_map(m)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(1, 12),
                           st.sampled_from(VOCABULARY)), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([BASE, sample("b_hosts"), sample("a_flat")]), edits=EDITS)
def test_fuzz_mutated_maps(base: str, edits: list[tuple[int, int, int, str]]) -> None:
    _parses_or_refuses(_mutate(base, edits))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=60).map(" ".join))
def test_fuzz_token_soup(src: str) -> None:
    _parses_or_refuses(src)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable + "\x00\x85\u2028~é{}#", max_size=400))
def test_fuzz_garbage(src: str) -> None:
    _parses_or_refuses(src)
