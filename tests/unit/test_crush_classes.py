"""Device-class shadow trees: the ids, names, items and weights crushtool gives them."""

from __future__ import annotations

import pytest

from rados_py.crush import classes, text
from rados_py.crush.model import ALG_NAMES, CrushMap
from rados_py.errors import CrushMapError
from tests.vectors import crushtool_compile, random_map_text

RULE = "rule r { id 0 type replicated min_size 1 max_size 10 step take %s step emit }\n"
TWO_HOSTS = """device 0 osd.0 class ssd
device 1 osd.1 class hdd
device 2 osd.2 class ssd
device 3 osd.3 class hdd
type 0 osd
type 1 host
type 2 root
host h0 { id -2 alg straw2 item osd.0 weight 1.0 item osd.1 weight 2.0 }
host h1 { id -3 alg straw2 item osd.2 weight 0.5 item osd.3 weight 1.5 }
root default { id -1 alg straw2 item h0 item h1 }
"""


def shadows(m: CrushMap) -> dict[int, tuple[str, int, list[tuple[int, int]]]]:
    return {b.id: (b.name, b.weight, [(it.id, it.weight) for it in b.items])
            for b in classes.shadow_buckets(m).values()}


def test_two_hosts_two_classes() -> None:
    """The case in the brief: h0~ssd -4, h1~ssd -5, default~ssd -6, then hdd -7 -8 -9."""
    m = text.parse(TWO_HOSTS + RULE % "default class hdd")
    assert shadows(m) == {
        -4: ("h0~ssd", 65536, [(0, 65536)]),
        -5: ("h1~ssd", 32768, [(2, 32768)]),
        -6: ("default~ssd", 98304, [(-4, 65536), (-5, 32768)]),
        -7: ("h0~hdd", 131072, [(1, 131072)]),
        -8: ("h1~hdd", 98304, [(3, 98304)]),
        -9: ("default~hdd", 229376, [(-7, 131072), (-8, 98304)]),
    }
    assert classes.resolve_take(m, -1, "hdd") == -9
    assert classes.resolve_take(m, -2, "ssd") == -4
    assert m.buckets[-1].class_ids == (("ssd", -6), ("hdd", -9))
    assert "\tid -6 class ssd\t\t# do not change unnecessarily\n" in text.format(m)
    shadow = classes.shadow_buckets(m)[-6]
    assert (shadow.type_id, shadow.alg, shadow.hash) == (2, m.buckets[-1].alg, 0)


def test_any_rule_builds_them_and_no_rule_builds_none() -> None:
    """crushtool builds shadow trees at the first rule, whether or not it uses a class."""
    assert classes.shadow_buckets(text.parse(TWO_HOSTS)) == {}
    assert text.parse(TWO_HOSTS).buckets[-1].class_ids == ()
    assert sorted(classes.shadow_buckets(text.parse(TWO_HOSTS + RULE % "default"))) == list(
        range(-9, -3))


def test_several_roots_gaps_and_class_order() -> None:
    """Roots by ascending id, classes in order of first appearance (zz before aa), each new id
    the first free one from -1 down: observed with crushtool 16.2.15."""
    m = text.parse("""device 0 osd.0 class zz
device 1 osd.1 class aa
device 2 osd.2
device 3 osd.3 class zz
device 5 osd.5 class aa
type 0 osd
type 1 host
type 2 root
host h0 { id -3 alg straw2 item osd.0 weight 1.0 item osd.1 weight 2.0 }
host h1 { id -7 alg straw2 item osd.2 weight 0.5 item osd.3 weight 1.5 }
host h2 { id -10 alg straw2 item osd.5 }
root r1 { id -1 alg straw2 item h0 item h1 }
root r2 { id -5 alg straw2 item h2 }
""" + RULE % "r1 class aa")
    assert {i: name for i, (name, _, _) in shadows(m).items()} == {
        -2: "h2~zz", -4: "r2~zz", -6: "h2~aa", -8: "r2~aa", -9: "h0~zz", -11: "h1~zz",
        -12: "r1~zz", -13: "h0~aa", -14: "h1~aa", -15: "r1~aa"}
    assert shadows(m)[-14] == ("h1~aa", 0, [])  # empty shadows exist, with weight 0
    assert shadows(m)[-15][2] == [(-13, 131072), (-14, 0)]


def test_declared_ids_are_kept_and_reserved() -> None:
    m = text.parse("""device 0 osd.0 class ssd
device 1 osd.1 class hdd
device 2 osd.2 class ssd
type 0 osd
type 1 host
type 2 root
host h0 { id -2 id -9 class hdd alg straw2 item osd.0 weight 1.0 item osd.1 weight 2.0 }
host h1 { id -4 alg straw2 item osd.2 weight 1.0 }
root default { id -1 id -3 class ssd alg straw2 item h0 item h1 }
host lone { id -12 alg straw2 }
""" + RULE % "default class ssd")
    assert {i: name for i, (name, _, _) in shadows(m).items()} == {
        -3: "default~ssd", -5: "lone~ssd", -6: "lone~hdd", -7: "h0~ssd", -8: "h1~ssd",
        -9: "h0~hdd", -10: "h1~hdd", -11: "default~hdd"}
    assert classes.resolve_take(m, -1, "ssd") == -3


def test_a_class_only_declared_in_a_bucket_gets_a_tree() -> None:
    m = text.parse(TWO_HOSTS.replace("host h0 { id -2", "host h0 { id -2 id -20 class nvme")
                   + RULE % "default class ssd")
    assert classes.class_order(m) == ["ssd", "hdd", "nvme"]
    assert shadows(m)[-20] == ("h0~nvme", 0, [])
    assert m.buckets[-2].class_ids[-1] == ("nvme", -20)


def test_shadow_weights_are_recomputed_sums() -> None:
    """An explicit bucket item weight (7.0 here) does not carry over to the shadow tree."""
    m = text.parse(TWO_HOSTS.replace("item h0 item h1", "item h0 weight 7 item h1")
                   + RULE % "default")
    assert m.buckets[-1].items[0].weight == 7 * 65536
    assert shadows(m)[-6][2] == [(-4, 65536), (-5, 32768)]


def test_uniform_buckets_stop_the_copy_like_crushtool() -> None:
    """crushtool cannot add an item to the copy of a uniform bucket: it stops there, keeping
    what it built (here h0~ssd, the first child; an empty uniform bucket copies fine)."""
    src = TWO_HOSTS.replace("root default { id -1 alg straw2", "root default { id -1 alg uniform")
    src = src.replace("item h0 item h1", "item h0 weight 3 item h1 weight 3")
    m = text.parse(src + RULE % "h0 class ssd")
    assert {i: name for i, (name, _, _) in shadows(m).items()} == {-4: "h0~ssd"}
    assert classes.resolve_take(m, -2, "ssd") == -4
    with pytest.raises(CrushMapError, match="no shadow tree"):
        classes.resolve_take(m, -1, "ssd")
    with pytest.raises(CrushMapError, match=r"line 11: .*uniform"):
        text.parse(src + RULE % "default class ssd")


def test_resolve_take_refuses_what_has_no_tree() -> None:
    m = text.parse(TWO_HOSTS + RULE % "default")
    with pytest.raises(CrushMapError, match="not a bucket"):
        classes.resolve_take(m, 0, "ssd")
    with pytest.raises(CrushMapError, match="no shadow tree"):
        classes.resolve_take(m, -1, "nvme")


def test_deep_trees_do_not_recurse() -> None:
    """Shadow trees are built without recursion: a 3000-level chain is fine."""
    chain = "".join(f"host b{i} {{ alg straw2 item b{i + 1} }}\n" for i in range(3000))
    m = text.parse("device 0 osd.0 class ssd\ntype 0 osd\ntype 1 host\n" + chain
                   + "host b3000 { alg straw2 item osd.0 }\n" + RULE % "b0 class ssd")
    assert len(classes.shadow_buckets(m)) == 3001
    assert classes.shadow_buckets(m)[classes.resolve_take(m, m.item_by_name("b0"), "ssd")].weight \
        == 65536


def _crushtool_shadows(src: str) -> dict[int, tuple[str, int, int, str, list]]:
    compiled = crushtool_compile(src)
    assert not isinstance(compiled, str), compiled
    dump, _ = compiled
    return {b["id"]: (b["name"], b["type_id"], b["weight"], b["alg"],
                      [(it["id"], it["weight"]) for it in b["items"]])
            for b in dump["buckets"] if "~" in b["name"]}


@pytest.mark.parametrize("src", [
    TWO_HOSTS + RULE % "default class hdd",
    TWO_HOSTS.replace("host h1 { id -3", "host h1 { id -30 id -4 class hdd") + RULE % "h1",
    TWO_HOSTS.replace(" id -2 ", " ").replace(" id -3 ", " ") + RULE % "default class ssd",
    TWO_HOSTS.replace("root default { id -1 alg straw2", "root default { id -1 alg uniform")
    .replace("item h0 item h1", "item h0 weight 3 item h1 weight 3") + RULE % "h0 class ssd",
])
def test_against_crushtool(src: str) -> None:
    m = text.parse(src)
    ours = {b.id: (b.name, b.type_id, b.weight, ALG_NAMES[b.alg],
                   [(it.id, it.weight) for it in b.items])
            for b in classes.shadow_buckets(m).values()}
    assert ours == _crushtool_shadows(src)


@pytest.mark.parametrize("seed", [s for s in range(60) if " class " in random_map_text(s)][:20])
def test_random_maps_against_crushtool(seed: int) -> None:
    src = random_map_text(seed)
    m = text.parse(src)
    ours = {b.id: (b.name, b.type_id, b.weight, ALG_NAMES[b.alg],
                   [(it.id, it.weight) for it in b.items])
            for b in classes.shadow_buckets(m).values()}
    assert ours == _crushtool_shadows(src)
