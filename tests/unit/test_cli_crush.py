"""`loligo crush ...` as a user runs it: output that diffs clean against Ceph's tools, one-line
errors with the right exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.cli import main
from tests.vectors import vectors_dir

VECTORS = vectors_dir()
ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", ["a_flat", "b_hosts"])
def test_show_mappings_equals_crushtool_vectors(capsys, name: str) -> None:
    rc, out, _ = run(capsys, "crush", "test", "-i", str(VECTORS / f"{name}.txt"),
                     "--show-mappings", "--rule", "0", "--num-rep", "3", "--min-x", "0",
                     "--max-x", "1999")
    assert rc == 0
    assert out == (VECTORS / f"{name}.rule0.rep3.x0-1999.txt").read_text()


def test_map_object_equals_object_vectors(capsys, tmp_path: Path) -> None:
    vectors = [json.loads(line) for line in (VECTORS / "objects.jsonl").read_text().splitlines()]
    for pool in (1, 2):
        for nspace in sorted({v["nspace"] for v in vectors if v["pool"] == pool}):
            batch = [v for v in vectors if v["pool"] == pool and v["nspace"] == nspace]
            names = tmp_path / "names"
            names.write_text("".join(v["name_hex"] + "\n" for v in batch))
            rc, out, err = run(capsys, "crush", "map-object", "-i", str(VECTORS / "b_hosts.txt"),
                               "--pool-id", str(pool), "--pg-num", str(batch[0]["pg_num"]),
                               "--size", "3", "--rule", "0", "--hex", "--names-file", str(names),
                               "--nspace", nspace)
            assert rc == 0, err
            got = [json.loads(line) for line in out.splitlines()]
            assert len(got) == len(batch)
            for g, v in zip(got, batch, strict=True):
                for key, value in v.items():
                    if value is not None:
                        assert g[key] == value, (key, v)


def test_map_object_marks_down_osds(capsys) -> None:
    args = ["crush", "map-object", "-i", str(VECTORS / "b_hosts.txt"), "--pool-id", "1",
            "--pg-num", "64", "--size", "3", "--rule", "0", "foo"]
    _, out, _ = run(capsys, *args)
    healthy = json.loads(out)
    primary = healthy["up_primary"]
    _, out, _ = run(capsys, *args, "--mark-down", str(primary))
    degraded = json.loads(out)
    assert degraded["up"] == [o for o in healthy["up"] if o != primary]
    assert degraded["up_primary"] == healthy["up"][1]
    _, out, _ = run(capsys, *args[:-2], "1", "--pool-type", "erasure", "--mark-down",
                    str(primary), "foo")
    ec = json.loads(out)
    assert 2147483647 in ec["up"] and primary not in ec["up"]


def test_compile_decompile_round_trip(capsys, tmp_path: Path) -> None:
    binary, back = tmp_path / "b.bin", tmp_path / "b.txt"
    rc, _, err = run(capsys, "crush", "compile", "-i", str(VECTORS / "b_hosts.txt"), "-o",
                     str(binary))
    assert rc == 0, err
    assert not binary.read_bytes().isascii()
    rc, _, err = run(capsys, "crush", "decompile", "-i", str(binary), "-o", str(back))
    assert rc == 0, err
    from rados_py.crush import text

    assert text.parse(back.read_text()) == text.parse((VECTORS / "b_hosts.txt").read_text())
    # and the compiled map maps exactly like the text
    rc, out, _ = run(capsys, "crush", "test", "-i", str(binary), "--show-mappings", "--rule",
                     "0", "--num-rep", "3", "--min-x", "0", "--max-x", "1999")
    assert out == (VECTORS / "b_hosts.rule0.rep3.x0-1999.txt").read_text()


@pytest.mark.parametrize("argv", [
    ["crush", "test"],
    ["crush", "test", "-i", "x", "--num-rep", "abc"],
    ["crush", "test", "-i", "x", "--num-rep", "0"],
    ["crush", "frobnicate"],
    ["nosuchcommand"],
    ["crush", "map-object", "-i", "x", "--pool-id", "1"],
    ["crush", "test", "-i", "x", "--weight", "1"],
    ["crush", "test", "-i", "x", "--weight", "one", "0.5"],
])
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv: list[str]) -> None:
    rc, _out, err = run(capsys, *argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_bad_map_gives_one_line_naming_the_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("device 0 osd.0\ntype 0 osd\ntype 1 root\nroot default {\n\tid -1\n"
                   "\talg straw2\n\titem osd.7 weight 1\n}\n")
    rc, _, err = run(capsys, "crush", "test", "-i", str(bad), "--show-mappings")
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and "line 7" in err, err


@pytest.mark.parametrize("argv", [
    ["crush", "test", "-i", "/nonexistent/map.txt"],
    ["crush", "test", "-i", "{vectors}/a_flat.txt", "--rule", "9"],
    ["crush", "test", "-i", "{vectors}/a_flat.txt", "--min-x", "5", "--max-x", "1"],
    ["crush", "map-object", "-i", "{vectors}/a_flat.txt", "--pool-id", "1", "--pg-num", "8",
     "--size", "3", "--rule", "0", "--hex", "zz"],
])
def test_failures_give_one_line_and_exit_1(capsys, argv: list[str]) -> None:
    rc, _, err = run(capsys, *[a.format(vectors=VECTORS) for a in argv])
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_help_everywhere(capsys) -> None:
    for argv in (["--help"], ["crush", "--help"], ["crush", "test", "--help"],
                 ["crush", "map-object", "--help"], ["crush", "compile", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_console_script_runs_as_a_real_process() -> None:
    done = subprocess.run([sys.executable, "-m", "cluster", "crush", "test", "-i",
                           str(VECTORS / "a_flat.txt"), "--show-mappings", "--rule", "0",
                           "--num-rep", "3", "--x", "17"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = (VECTORS / "a_flat.rule0.rep3.x0-1999.txt").read_text().splitlines()[17]
    assert done.stdout.strip() == expected


def test_a_ceph_binary_map_gets_a_hint(capsys, tmp_path: Path) -> None:
    ceph_binary = tmp_path / "ceph.map"
    ceph_binary.write_bytes((0x00010000).to_bytes(4, "little") + b"\x00" * 64)
    rc, _, err = run(capsys, "crush", "test", "-i", str(ceph_binary), "--show-mappings")
    assert rc == 1 and "crushtool -d" in err and len(err.strip().splitlines()) == 1
