"""config.py: one typed schema, sections like ceph.conf, one-line errors naming file, section
and option, and a writer whose files read back the same."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rados_py import config
from rados_py.config import SCHEMA, Config, ConfigError, MonAddr
from rados_py.errors import InvalidArgument

FSID = str(uuid.UUID(int=7))


def write(tmp_path: Path, text: str, name: str = "loligo.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_schema_is_self_consistent() -> None:
    assert issubclass(ConfigError, InvalidArgument)
    for opt in SCHEMA.values():
        assert opt.help and opt.daemons and set(opt.daemons) <= set(config.DAEMON_TYPES)
        assert opt.kind in config.KINDS
        default = config.KINDS[opt.kind].to_toml(opt.default)
        assert opt.parse(default) == (Path(default) if opt.kind == "path" else opt.default)
        assert (opt.min is None) == (opt.max is None)
    for name in ["fsid", "mon_host", "keyring", "data_dir", "log_dir", "run_dir", "rpc_timeout",
                 "rpc_max_message_size", "rpc_retry_initial", "rpc_retry_backoff",
                 "rpc_retry_max", "ticket_ttl", "mon_election_timeout_min",
                 "mon_election_timeout_max", "mon_heartbeat_interval",
                 "mon_osd_down_out_interval", "mon_osd_report_grace", "osd_heartbeat_interval",
                 "osd_heartbeat_grace", "metrics_port_offset", "log_level"]:
        assert name in SCHEMA


def test_defaults_suit_a_local_cluster(tmp_path: Path) -> None:
    cfg = Config.defaults("mon.a", base_dir=tmp_path)
    assert cfg.entity == "mon.a" and cfg.daemon_type == "mon" and cfg.source is None
    assert cfg.mon_heartbeat_interval < cfg.mon_election_timeout_min <= cfg.mon_election_timeout_max
    assert cfg.osd_heartbeat_interval < cfg.osd_heartbeat_grace < cfg.mon_osd_report_grace
    assert cfg.rpc_timeout <= 30 and cfg.mon_election_timeout_max <= 5
    assert cfg.keyring == tmp_path / "keyring" and cfg.data_dir == tmp_path / "data"


def test_sections_override_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        [global]
        fsid = "{FSID}"
        mon_host = ["a=127.0.0.1:6789", "b=127.0.0.1:6790"]
        rpc_timeout = "3s"
        log_level = "debug"
        [mon]
        rpc_timeout = 2
        [mon.a]
        rpc_timeout = "500ms"
        ["mon.b"]
        rpc_timeout = 1.5
        [osd.3]
        osd_heartbeat_interval = 0.25
    """)
    env: dict[str, str] = {}
    assert config.load(path, "mon.a", env).rpc_timeout == 0.5
    assert config.load(path, "mon.b", env).rpc_timeout == 1.5
    assert config.load(path, "mon.c", env).rpc_timeout == 2.0
    assert config.load(path, "osd.3", env).rpc_timeout == 3.0
    assert config.load(path, "osd.3", env).osd_heartbeat_interval == 0.25
    assert config.load(path, "osd.4", env).osd_heartbeat_interval == 0.5
    client = config.load(path, "client.admin", env)
    assert client.fsid == FSID and client.log_level == "DEBUG" and client.source == path
    assert client.mon_host == (MonAddr("a", "127.0.0.1", 6789), MonAddr("b", "127.0.0.1", 6790))
    assert client.mon_host[0].addr == "127.0.0.1:6789"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[mon.a]\nrpc_timeout = 4\n")
    env = {"LOLIGO_RPC_TIMEOUT": "250ms", "LOLIGO_MON_HOST": "a=[::1]:7000,b=h:1",
           "LOLIGO_CONF": "/elsewhere", "LOLIGO_NOT_AN_OPTION": "x"}
    cfg = config.load(path, "mon.a", env)
    assert cfg.rpc_timeout == 0.25
    assert [str(m) for m in cfg.mon_host] == ["a=[::1]:7000", "b=h:1"]
    with pytest.raises(ConfigError, match=r"^environment LOLIGO_RPC_RETRY_ATTEMPTS: expected an "
                                          r"integer, got 'many'$"):
        config.load(path, "mon.a", {"LOLIGO_RPC_RETRY_ATTEMPTS": "many"})


@pytest.mark.parametrize(("text", "error"), [
    ("[global]\nrpc_timout = 1", r"\[global\]: unknown option 'rpc_timout' "
                                 r"\(did you mean 'rpc_timeout'\?\)"),
    ("[osd.3]\nfoo = 1", r"\[osd.3\]: unknown option 'foo'"),
    ("[mon]\nrpc_timeout = true", r"\[mon\] rpc_timeout: expected a number, got boolean True"),
    ("[global]\nrpc_retry_attempts = 2.5", r"rpc_retry_attempts: expected an integer, got float"),
    ("[global]\nrpc_timeout = 0", r"\[global\] rpc_timeout: 0 is below the minimum 0.001"),
    ("[global]\nrpc_max_message_size = '4GiB'", r"'4GiB' is above the maximum 2147483647"),
    ("[global]\nrpc_timeout = '10 parsecs'", r"expected a duration"),
    ("[global]\nmetrics_port_offset = '12'", r"expected an integer, got string '12'"),
    ("[global]\nlog_level = 'LOUD'", r"expected one of DEBUG, INFO"),
    ("[global]\nfsid = 'not-a-uuid'", r"\[global\] fsid: expected a UUID"),
    ("[global]\nmon_host = ['a=host']", r"mon_host: expected name=host:port"),
    ("[global]\nmon_host = ['a=h:70000']", r"mon_host: expected name=host:port"),
    ("[global]\nmon_host = 5", r"mon_host: expected a list"),
    ("[global]\nkeyring = ''", r"keyring: expected a path"),
    ("[monitor]\nrpc_timeout = 1", r"unknown section \[monitor\]"),
    ("[osd.x]\nrpc_timeout = 1", r"unknown section \[osd.x\]"),
    ("[mon.a.b]\nrpc_timeout = 1", r"unknown section \[mon.a\]"),
    ("rpc_timeout = 1", r"option 'rpc_timeout' is outside any section"),
    ("[global\n", r"not valid TOML"),
    ("[global]\nmon_election_timeout_min = 3", r"\(for mon.a\): mon_election_timeout_min \(3\) "
                                               r"must be at most mon_election_timeout_max \(2\)"),
    ("[mon]\nmon_heartbeat_interval = 1", r"mon_heartbeat_interval \(1\) must be below"),
    ("[global]\nmon_host = ['a=h:1', 'a=h:2']", r"names the same monitor twice"),
    ("[osd.1]\npublic_addr = '0.0.0.0'", r"\[osd.1\] public_addr: '0.0.0.0' is a wildcard"),
    ("[osd]\npublic_addr = 'host1'", r"public_addr: expected an IP address"),
    ("[osd]\nosd_crush_location = 'rack=r1'", r"osd_crush_location: expected host=NAME"),
    ("[osd]\nosd_crush_location = 'host=a b'", r"osd_crush_location: expected host=NAME"),
])
def test_mistakes_are_one_line_errors_naming_file_section_option(tmp_path: Path, text: str,
                                                                 error: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=error) as info:
        config.load(path, "mon.a", {})
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_public_addr_and_crush_location_per_daemon(tmp_path: Path) -> None:
    path = write(tmp_path, "[osd.1]\npublic_addr = '10.77.0.2'\n"
                           "osd_crush_location = ' host=h2 '\n[osd.2]\npublic_addr = '::1'\n")
    one, two = config.load(path, "osd.1", {}), config.load(path, "osd.2", {})
    assert (one.public_addr, one.osd_crush_location) == ("10.77.0.2", "host=h2")
    assert (two.public_addr, two.osd_crush_location) == ("::1", "")
    assert config.host_port(two.public_addr, 6800) == "[::1]:6800"
    assert config.load(path, "osd.0", {}).public_addr == "127.0.0.1"


def test_missing_file_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such config file \(give --conf FILE or set "
                                          r"LOLIGO_CONF"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"bad entity 'rgw\.a'"):
        config.load(write(tmp_path, ""), "rgw.a")


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[global]\nkeyring = 'keys/ring'\ndata_dir = '/abs/data'\n"
                           "[osd.1]\nlog_dir = '~/logs'\n")
    cfg = config.load(path, "osd.1", {})
    assert cfg.keyring == tmp_path / "keys" / "ring"
    assert cfg.data_dir == Path("/abs/data")
    assert cfg.log_dir == Path("~/logs").expanduser()
    assert cfg.run_dir == tmp_path / "run"


def test_config_is_immutable_and_replace_checks(tmp_path: Path) -> None:
    cfg = Config.defaults(base_dir=tmp_path)
    with pytest.raises(AttributeError, match="immutable"):
        cfg.rpc_timeout = 1  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no config option 'nope'"):
        _ = cfg.nope
    shorter = cfg.replace(rpc_timeout="1s", mon_host=[MonAddr("a", "::1", 1)], keyring="k")
    assert (shorter.rpc_timeout, cfg.rpc_timeout) == (1.0, 10.0)
    assert shorter.mon_host == (MonAddr("a", "::1", 1),) and shorter.keyring == tmp_path / "k"
    assert shorter != cfg and cfg.replace() == cfg
    with pytest.raises(ConfigError, match=r"replace\(\): option rpc_timeout: .*below"):
        cfg.replace(rpc_timeout=-1)
    with pytest.raises(ConfigError, match="did you mean 'ticket_ttl'"):
        cfg.replace(ticket_tll=5)


def test_dump_toml_reads_back_equal(tmp_path: Path) -> None:
    cfg = Config.defaults("osd.2", base_dir=tmp_path, fsid=FSID, rpc_timeout=0.7,
                          mon_host="a=127.0.0.1:6789,b=[::1]:6790", log_level="warning",
                          rpc_max_message_size="1MiB")
    for full in (False, True):
        text = cfg.dump_toml(full=full)
        assert "# Cluster id" in text
        other_dir = tmp_path / f"elsewhere{full}"
        other_dir.mkdir()
        assert config.load(write(other_dir, text), "osd.2", {}) == cfg
    assert "rpc_retry_attempts" not in cfg.dump_toml()
    assert "rpc_retry_attempts = 5" in cfg.dump_toml(full=True)


def test_format_toml_for_the_launcher(tmp_path: Path) -> None:
    text = config.format_toml({"global": {"fsid": FSID, "mon_host": ["a=127.0.0.1:6789"]},
                               "mon.a": {"rpc_timeout": "2s"}, "osd": {"keyring": "k"}})
    path = write(tmp_path, text)
    assert config.load(path, "mon.a", {}).rpc_timeout == 2.0
    assert config.load(path, "osd.0", {}).keyring == tmp_path / "k"
    with pytest.raises(ConfigError, match=r"format_toml \[global\] rpc_timeout"):
        config.format_toml({"global": {"rpc_timeout": -5}})
    with pytest.raises(ConfigError, match="unknown option"):
        config.format_toml({"global": {"nope": 1}})
    with pytest.raises(ConfigError, match="bad entity"):
        config.format_toml({"nope.1": {}})


def test_describe_lists_every_option_with_help() -> None:
    text = config.describe()
    for opt in SCHEMA.values():
        assert f"{opt.name} (" in text and opt.help in text
    assert "rpc_timeout (duration s, default 10.0, 0.001..3600)" in text
    mon_only = config.describe("mon")
    assert "mon_election_timeout_min" in mon_only and "osd_heartbeat_grace" in mon_only
    assert "mon_election_timeout_min" not in config.describe("osd")


def test_find_conf_precedence(tmp_path: Path) -> None:
    env = {"LOLIGO_CONF": str(tmp_path / "env.toml")}
    assert config.find_conf("x.toml", env) == Path("x.toml")
    assert config.find_conf(None, env) == tmp_path / "env.toml"
    assert config.find_conf(None, {}) == Path(
        "~/.local/share/loligo/cluster/loligo.toml").expanduser()


@pytest.mark.parametrize(("text", "seconds"), [("1.5", 1.5), ("500ms", 0.5), ("2s", 2.0),
                                                ("3m", 180.0), ("1h", 3600.0), (" 10 s ", 10.0),
                                                (".5", 0.5), ("1e-3", 0.001)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "size"), [("4096", 4096), ("64KiB", 65536), ("16M", 16 << 20),
                                             ("1.5GiB", 3 << 29), ("2kb", 2048), ("7B", 7)])
def test_parse_size(text: str, size: int) -> None:
    assert config.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ms", "-1s", "1 day", "1.5.2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        config.parse_duration(text)


@pytest.mark.parametrize("text", ["", "1.0001K", "1X", "-5"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        config.parse_size(text)


@settings(max_examples=50, deadline=None)
@given(timeout=st.floats(0.001, 3600), size=st.integers(1024, 2**31 - 1),
       grace=st.floats(0.02, 600), attempts=st.integers(1, 1000),
       names=st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,5}", fullmatch=True), unique=True,
                      max_size=5))
def test_any_valid_config_round_trips(tmp_path_factory: pytest.TempPathFactory, timeout: float,
                                      size: int, grace: float, attempts: int,
                                      names: list[str]) -> None:
    base = tmp_path_factory.mktemp("conf")
    cfg = Config.defaults("osd.1", base_dir=base, rpc_timeout=timeout, rpc_max_message_size=size,
                          osd_heartbeat_grace=grace, rpc_retry_attempts=attempts,
                          osd_heartbeat_interval=0.01,
                          mon_host=[f"{n}=127.0.0.1:{6789 + i}" for i, n in enumerate(names)])
    assert config.load(write(base, cfg.dump_toml()), "osd.1", {}) == cfg
