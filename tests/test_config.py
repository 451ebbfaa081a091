"""Tests for mpush.config: defaults, the Java file, formats, and every error path."""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpush.config import (
    AllocSettings,
    ConfigError,
    RedisSettings,
    Settings,
    ZkSettings,
    format_duration,
    load_settings,
    parse_duration,
    parse_settings,
    parse_size,
)
from mpush.config.addresses import udp_bind_address

DATA = Path(__file__).parent / "data"
JAVA_ALLOC = DATA / "java-alloc.conf"
DEMO = Path(__file__).parent.parent / "conf" / "mpush.conf"

Write = Callable[..., str]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write a config file under tmp_path; return its path as a string."""

    def _write(text: str, name: str = "test.conf") -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return _write


def error_of(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value


# ---------------------------------------------------------------- defaults


def test_empty_file_gives_the_documented_defaults(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write("")
    loaded = load_settings(path)
    assert loaded.source == path
    assert loaded.port == 9999
    assert loaded.protocol == "http"
    assert loaded.gateway_net == "tcp"
    assert loaded.max_packet_size == 10240
    assert loaded.gateway_client_num == 1
    assert loaded.zk == ZkSettings(
        server_address="127.0.0.1:2181",
        namespace="mpush",
        digest="mpush",
        session_timeout=5.0,
        connection_timeout=5.0,
    )
    assert loaded.redis == RedisSettings(
        mode="single",
        nodes=(("127.0.0.1", 6379),),
        password=None,
        sentinel_master=None,
        connect_timeout=2.0,
        reply_timeout=2.0,
    )
    assert loaded.alloc == AllocSettings(
        interface="0.0.0.0",
        refresh_interval=30.0,
        change_delay=0.2,
        tls_cert=None,
        tls_key=None,
        data_dir=str(tmp_path / "run" / "data"),
        access_log=None,
        retry_after=5,
        push_timeout=3.0,
        broadcast_timeout=30.0,
        gateway_connect_timeout=4.0,
        shutdown_grace=5.0,
        drain_delay=2.0,
        max_request_size=65536,
        max_users_per_push=1000,
        max_inflight_pushes=10_000,
        request_head_timeout=10.0,
        max_pending_per_gateway=10_000,
    )


def test_dataclass_defaults_match_an_empty_file(write: Write) -> None:
    """Settings() is what other modules' tests build; it must agree with the loader."""
    loaded = load_settings(write("// nothing but a comment\n"))
    built = Settings()
    assert (
        dataclasses.replace(
            loaded,
            source=built.source,
            alloc=dataclasses.replace(loaded.alloc, data_dir="run/data"),
        )
        == built
    )


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ZkSettings().namespace = "x"  # type: ignore[misc]


def test_demo_config_loads_for_the_local_stack() -> None:
    loaded = load_settings(str(DEMO))
    assert loaded.port == 9999
    assert loaded.protocol == "http"
    assert loaded.zk.server_address == "127.0.0.1:2181"
    assert loaded.zk.digest == "mpush"
    assert loaded.redis.mode == "single"
    assert loaded.redis.nodes == (("127.0.0.1", 6379),)
    assert loaded.redis.password is None
    assert loaded.alloc.access_log is None
    assert loaded.alloc.change_delay == pytest.approx(0.2)


# ---------------------------------------------------------------- the Java file


def test_java_alloc_file_loads_with_its_values() -> None:
    loaded = load_settings(str(JAVA_ALLOC))
    assert loaded.source == str(JAVA_ALLOC)
    assert loaded.port == 9999
    assert loaded.protocol == "http"
    assert loaded.gateway_net == "tcp"
    assert loaded.max_packet_size == 10 * 1024
    assert loaded.gateway_client_num == 2
    assert loaded.zk == ZkSettings(
        server_address="10.0.10.44:2181,10.0.10.49:2181",
        namespace="mpush",
        digest="mpush",
        session_timeout=5.0,  # sessionTimeoutMs=5000, a bare number in ms
        connection_timeout=3.0,  # connectionTimeoutMs=3s
    )
    assert loaded.redis.mode == "single"
    assert loaded.redis.nodes == (("10.0.10.50", 6379),)
    assert loaded.redis.password is None  # password:""
    assert loaded.redis.sentinel_master is None  # sentinel-master:""


def test_java_placeholder_in_a_key_we_read_names_that_key(write: Write) -> None:
    text = JAVA_ALLOC.read_text(encoding="utf-8") + "\nmp.net.alloc-server-port=${log.level}\n"
    path = write(text)
    err = error_of(path)
    assert str(err) == (
        f"{path}: mp.net.alloc-server-port: unresolved substitution ${{log.level}} "
        "(define it in the file or the environment)"
    )


def test_placeholder_inside_a_string_we_read_is_an_error(write: Write) -> None:
    err = error_of(write('mp.zk.server-address = "127.0.0.1:"${zk.port}\n'))
    assert err.key == "mp.zk.server-address"
    assert "${zk.port}" in str(err)


def test_placeholder_in_a_list_item_names_the_list(write: Write) -> None:
    err = error_of(write('mp.redis.nodes = ["a:1", ${redis.node}]\n'))
    assert err.key == "mp.redis.nodes"
    assert "unresolved substitution ${redis.node}" in str(err)


def test_placeholder_on_a_parent_object_names_the_parent(write: Write) -> None:
    err = error_of(write("mp.redis = ${redis.block}\n"))
    assert err.key == "mp.redis"
    assert "unresolved substitution ${redis.block}" in str(err)


def test_user_dir_resolves_to_the_working_directory(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write("mp.home = ${user.dir}\nmp.alloc.data-dir = ${mp.home}/data\n")
    assert load_settings(path).alloc.data_dir == str(tmp_path / "data")


def test_user_home_and_tmpdir_resolve(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(
        "mp.alloc.access-log = ${user.home}/access.log\n"
        "mp.alloc.data-dir = ${java.io.tmpdir}/alloc\n"
    )
    loaded = load_settings(path)
    assert loaded.alloc.access_log == str(tmp_path / "home" / "access.log")
    assert loaded.alloc.data_dir == os.path.join(tempfile.gettempdir(), "alloc")


def test_file_value_wins_over_a_java_property(write: Write) -> None:
    path = write('user.dir = "/srv/alloc"\nmp.alloc.data-dir = ${user.dir}/data\n')
    assert load_settings(path).alloc.data_dir == "/srv/alloc/data"


def test_environment_variables_resolve(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPUSH_TEST_PORT", "8123")
    assert load_settings(write("mp.net.alloc-server-port = ${MPUSH_TEST_PORT}\n")).port == 8123


def test_optional_substitution_that_is_missing_keeps_the_default(write: Write) -> None:
    path = write("mp.net.alloc-server-port = ${?MPUSH_TEST_SURELY_UNSET_VARIABLE}\n")
    assert load_settings(path).port == 9999


def test_substitution_of_another_key(write: Write) -> None:
    path = write("base.port = 7001\nmp.net.alloc-server-port = ${base.port}\n")
    assert load_settings(path).port == 7001


def test_comment_right_after_an_unquoted_value(write: Write) -> None:
    """HOCON (and Java) end an unquoted value at // or #, even without a space."""
    path = write(
        "mp.redis.cluster-model=cluster//single,cluster,sentinel\n"
        "mp.zk.namespace=apps#a comment, with a comma\n"
        'mp.redis.password = "a//b#c" // quoted text keeps its // and #\n'
    )
    loaded = load_settings(path)
    assert loaded.redis.mode == "cluster"
    assert loaded.zk.namespace == "apps"
    assert loaded.redis.password == "a//b#c"


def test_quoted_dollar_brace_is_literal_text(write: Write) -> None:
    assert (
        load_settings(write('mp.redis.password = "${not.a.sub}"\n')).redis.password
        == "${not.a.sub}"
    )


# ---------------------------------------------------------------- value forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5000", 5.0),  # bare number: milliseconds, as in Java
        ("5s", 5.0),
        ('"5s"', 5.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("10 seconds", 10.0),
        ("2m", 120.0),
        ("1 minute", 60.0),
        ("1h", 3600.0),
        ("5000000us", 5.0),
        ('"5 s"', 5.0),
    ],
)
def test_durations_in_the_file(write: Write, text: str, expected: float) -> None:
    loaded = load_settings(write(f"mp.alloc.refresh-interval = {text}\n"))
    assert loaded.alloc.refresh_interval == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10k", 10240),
        ("10K", 10240),
        ("10kb", 10240),
        ("10KiB", 10240),
        ("10kB", 10000),  # Java: kB is decimal
        ("0.5k", 512),
        ("1m", 1024 * 1024),  # pyhocon reads this as one minute; a size means 1 MiB
        ('"1m"', 1024 * 1024),
        ("2M", 2 * 1024 * 1024),
        ("4096", 4096),
        ('"4096"', 4096),
        ("100 bytes", 100),
    ],
)
def test_sizes_in_the_file(write: Write, text: str, expected: int) -> None:
    assert load_settings(write(f"mp.core.max-packet-size = {text}\n")).max_packet_size == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("1", 0.001),
        ("5000", 5.0),
        ("1.5", 0.0015),
        ("7ns", 7e-9),
        ("7nanos", 7e-9),
        ("3us", 3e-6),
        ("3micros", 3e-6),
        ("3microseconds", 3e-6),
        ("500ms", 0.5),
        ("500millis", 0.5),
        ("1millisecond", 0.001),
        ("5s", 5.0),
        ("5 s", 5.0),
        (" 5s ", 5.0),
        ("1second", 1.0),
        ("2seconds", 2.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1m", 60.0),
        ("1min", 60.0),
        ("3mins", 180.0),
        ("2minutes", 120.0),
        ("2h", 7200.0),
        ("1hour", 3600.0),
        ("1d", 86400.0),
        ("2days", 172800.0),
        ("1w", 604800.0),
    ],
)
def test_parse_duration_table(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "5x",
        "5 sec",
        "5S",
        "-5s",
        "+5s",
        "5s5",
        "1e3",
        "five",
        "5 s s",
        "1mo",
        "1y",
        "5,0s",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("0", 0),
        ("512", 512),
        ("512b", 512),
        ("512B", 512),
        ("1byte", 1),
        ("2bytes", 2),
        ("10k", 10240),
        ("10K", 10240),
        ("10Ki", 10240),
        ("10KiB", 10240),
        ("10kb", 10240),
        ("1kibibyte", 1024),
        ("10kB", 10000),
        ("2kilobytes", 2000),
        ("1m", 1 << 20),
        ("1M", 1 << 20),
        ("1MiB", 1 << 20),
        ("1mb", 1 << 20),
        ("1MB", 10**6),
        ("1g", 1 << 30),
        ("1GB", 10**9),
        ("1t", 1 << 40),
        ("0.5k", 512),
        ("0.1k", 102),  # Java truncates fractional bytes
        ("1.5m", 3 << 19),
        ("3 k", 3072),
    ],
)
def test_parse_size_table(text: str, count: int) -> None:
    assert parse_size(text) == count


@pytest.mark.parametrize("text", ["", "k", "10x", "10 kk", "-1k", "10mB", "1e3", "ten", "10KB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.2, "200ms"),
        (5, "5s"),
        (90, "90s"),
        (120, "2m"),
        (7200, "2h"),
        (86400, "1d"),
        (1.2345, "1.2345s"),
        (1.5e-6, "0.0000015s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "seconds": 1.0,
    "minutes": 60.0,
    "days": 86400.0,
}


@given(
    count=st.integers(min_value=0, max_value=10**9),
    unit=st.sampled_from(sorted(_UNIT_SECONDS)),
    space=st.sampled_from(["", " ", "  "]),
)
def test_parse_duration_scales_integers_by_the_unit(count: int, unit: str, space: str) -> None:
    assert parse_duration(f"{count}{space}{unit}") == pytest.approx(
        count * _UNIT_SECONDS[unit], rel=1e-12
    )


@given(millis=st.integers(min_value=0, max_value=10**10))
def test_format_duration_round_trips_whole_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12)


# (unit, smallest, largest) counts that keep mp.alloc.broadcast-timeout within 1s..1d
_IN_RANGE = [
    ("ms", 1000, 86_400_000),
    ("s", 1, 86400),
    ("seconds", 1, 86400),
    ("m", 1, 1440),
    ("minutes", 1, 1440),
    ("h", 1, 24),
    ("d", 1, 1),
]


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(_IN_RANGE).flatmap(
        lambda u: st.tuples(st.just(u[0]), st.integers(min_value=u[1], max_value=u[2]))
    ),
    space=st.sampled_from(["", " "]),
    quoted=st.booleans(),
)
def test_file_durations_agree_with_parse_duration(
    case: tuple[str, int], space: str, quoted: bool
) -> None:
    """pyhocon turns an unquoted 5s into a timedelta before we see it; both paths must agree."""
    unit, count = case
    text = f"{count}{space}{unit}"
    value = f'"{text}"' if quoted else text
    loaded = parse_settings(f"mp.alloc.broadcast-timeout = {value}\n", "x.conf")
    assert loaded.alloc.broadcast_timeout == pytest.approx(parse_duration(text), rel=1e-12)


# ---------------------------------------------------------------- keys and semantics


def test_redis_password_forms(write: Write) -> None:
    assert load_settings(write('mp.redis.password = ""\n')).redis.password is None
    assert load_settings(write("mp.redis.password = null\n")).redis.password is None
    assert load_settings(write('mp.redis.password = "s3cret "\n')).redis.password == "s3cret "
    assert load_settings(write("mp.redis.password = 123456\n")).redis.password == "123456"


def test_zk_digest_empty_means_no_auth(write: Write) -> None:
    assert load_settings(write('mp.zk.digest = ""\n')).zk.digest is None
    assert load_settings(write("mp.zk.digest = null\n")).zk.digest is None
    assert load_settings(write("mp.zk.digest = other\n")).zk.digest == "other"


def test_zk_hosts_are_normalised(write: Write) -> None:
    path = write('mp.zk.server-address = " zk1:2181 , zk2 ,[::1]:2182/apps/push"\n')
    assert load_settings(path).zk.server_address == "zk1:2181,zk2:2181,[::1]:2182/apps/push"


def test_zk_namespace_slashes_are_trimmed(write: Write) -> None:
    assert load_settings(write('mp.zk.namespace = "/mpush/"\n')).zk.namespace == "mpush"
    assert load_settings(write('mp.zk.namespace = ""\n')).zk.namespace == ""


def test_redis_nodes_as_a_comma_separated_string(write: Write) -> None:
    path = write('mp.redis { cluster-model = cluster, nodes = "10.0.0.1:7000, 10.0.0.2:7001" }\n')
    loaded = load_settings(path)
    assert loaded.redis.mode == "cluster"
    assert loaded.redis.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))


def test_redis_nodes_list_with_ipv6(write: Write) -> None:
    path = write('mp.redis.nodes = ["[::1]:6379", "localhost:6380"]\n')
    assert load_settings(path).redis.nodes == (("::1", 6379), ("localhost", 6380))


def test_redis_cluster_accepts_a_password(write: Write) -> None:
    path = write('mp.redis { cluster-model: cluster, nodes: ["h:7000"], password: "pw" }\n')
    assert load_settings(path).redis.password == "pw"


def test_redis_sentinel_mode(write: Write) -> None:
    path = write(
        "mp.redis { cluster-model: sentinel, sentinel-master: mymaster\n"
        '  nodes: ["s1:26379", "s2:26379"] }\n'
    )
    redis = load_settings(path).redis
    assert (redis.mode, redis.sentinel_master) == ("sentinel", "mymaster")
    assert redis.nodes == (("s1", 26379), ("s2", 26379))


def test_sentinel_master_is_ignored_outside_sentinel_mode(write: Write) -> None:
    assert (
        load_settings(write("mp.redis.sentinel-master = mymaster\n")).redis.sentinel_master is None
    )


def test_alloc_keys(write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(
        "mp.alloc {\n"
        '  interface = "::1"\n'
        "  refresh-interval = 1m\n"
        "  change-delay = 0\n"
        '  data-dir = "state"\n'
        '  access-log = "logs/access.log"\n'
        "  redis-connect-timeout = 500ms\n"
        "  redis-reply-timeout = 3s\n"
        "  retry-after = 10\n"
        "  push-timeout = 5s\n"
        "  broadcast-timeout = 2m\n"
        "  gateway-connect-timeout = 1s\n"
        "  shutdown-grace = 0\n"
        "  drain-delay = 750ms\n"
        "  max-request-size = 8k\n"
        "}\n"
    )
    loaded = load_settings(path)
    assert loaded.alloc == AllocSettings(
        interface="::1",
        refresh_interval=60.0,
        change_delay=0.0,
        tls_cert=None,
        tls_key=None,
        data_dir=str(tmp_path / "state"),
        access_log=str(tmp_path / "logs" / "access.log"),
        retry_after=10,
        push_timeout=5.0,
        broadcast_timeout=120.0,
        gateway_connect_timeout=1.0,
        shutdown_grace=0.0,
        drain_delay=0.75,
        max_request_size=8192,
    )
    assert (loaded.redis.connect_timeout, loaded.redis.reply_timeout) == (0.5, 3.0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5", 5), ("2.5", 3), ("2500ms", 3), ("1m", 60), ('"7"', 7), ("0", 0)]
)
def test_retry_after_counts_whole_seconds(write: Write, text: str, seconds: int) -> None:
    assert load_settings(write(f"mp.alloc.retry-after = {text}\n")).alloc.retry_after == seconds


def test_https_with_readable_cert_and_key(write: Write, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("cert")
    (tmp_path / "key.pem").write_text("key")
    path = write(
        "mp.net.alloc-server-protocol = https\n"
        f'mp.alloc {{ tls-cert = "{tmp_path / "cert.pem"}", tls-key = "{tmp_path / "key.pem"}" }}\n'
    )
    loaded = load_settings(path)
    assert loaded.protocol == "https"
    assert loaded.alloc.tls_cert == str(tmp_path / "cert.pem")
    assert loaded.alloc.tls_key == str(tmp_path / "key.pem")


def test_https_without_cert_leaves_both_unset(write: Write) -> None:
    loaded = load_settings(write("mp.net.alloc-server-protocol = https\n"))
    assert (loaded.alloc.tls_cert, loaded.alloc.tls_key) == (None, None)


def test_cert_files_are_only_checked_for_https(write: Write, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    path = write(f'mp.alloc {{ tls-cert = "{missing}", tls-key = "{missing}" }}\n')
    assert load_settings(path).alloc.tls_cert == str(missing)


def test_gateway_client_num(write: Write) -> None:
    assert load_settings(write("mp.net.gateway-client-num = 4\n")).gateway_client_num == 4


def test_push_access_defaults() -> None:
    alloc = AllocSettings()
    assert alloc.push_token is None
    assert [str(n) for n in alloc.push_allow] == ["127.0.0.1/32", "::1/128"]


def test_push_token_and_allow_list(write: Write) -> None:
    path = write(
        "mp.alloc {\n"
        '  push-token = "s3cret-token-0123456789"\n'
        '  push-allow = ["10.0.0.0/8", " 192.168.1.7 ", "fd00::/8", "10.0.0.0/8"]\n'
        "}\n"
    )
    alloc = load_settings(path).alloc
    assert alloc.push_token == "s3cret-token-0123456789"
    # A bare address is a /32 (or /128); duplicates are dropped, order kept.
    assert [str(n) for n in alloc.push_allow] == ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]


@pytest.mark.parametrize("text", ['""', "null"])
def test_push_token_empty_or_null_means_none(write: Write, text: str) -> None:
    assert load_settings(write(f"mp.alloc.push-token = {text}\n")).alloc.push_token is None


def test_push_allow_forms(write: Write) -> None:
    # One comma-separated string works too, and [] means nobody without a token.
    text = 'mp.alloc.push-allow = "127.0.0.1/32, 10.1.0.0/16"\n'
    assert [str(n) for n in load_settings(write(text)).alloc.push_allow] == [
        "127.0.0.1/32",
        "10.1.0.0/16",
    ]
    assert load_settings(write("mp.alloc.push-allow = []\n")).alloc.push_allow == ()


def test_limit_keys(write: Write) -> None:
    path = write(
        "mp.alloc {\n"
        "  max-users-per-push = 50\n"
        '  max-inflight-pushes = "500"\n'
        "  request-head-timeout = 2500ms\n"
        "  max-pending-per-gateway = 3\n"
        "}\n"
    )
    alloc = load_settings(path).alloc
    assert (alloc.max_users_per_push, alloc.max_inflight_pushes) == (50, 500)
    assert alloc.request_head_timeout == 2.5
    assert alloc.max_pending_per_gateway == 3


def test_in_flight_limit_may_equal_the_users_limit(write: Write) -> None:
    path = write("mp.alloc { max-users-per-push = 20, max-inflight-pushes = 20 }\n")
    alloc = load_settings(path).alloc
    assert (alloc.max_users_per_push, alloc.max_inflight_pushes) == (20, 20)


def test_request_head_timeout_bare_number_is_milliseconds(write: Write) -> None:
    path = write("mp.alloc.request-head-timeout = 1500\n")
    assert load_settings(path).alloc.request_head_timeout == 1.5


@pytest.mark.parametrize(
    ("text", "level"),
    [("debug", "debug"), ("DEBUG", "debug"), ("Info", "info"), ("warn", "warn"),
     ("WARN", "warn"), ("error", "error"), ("critical", "critical"), ("trace", "debug"),
     ("ALL", "debug"), ("off", "critical"), ('" warn "', "warn")],
)
def test_log_level_in_the_java_spellings(write: Write, text: str, level: str) -> None:
    # The Java servers hand it to logback, which takes any case.
    assert load_settings(write(f"mp.log-level = {text}\n")).log_level == level


def test_log_level_defaults_to_info(write: Write) -> None:
    assert load_settings(write("")).log_level == Settings().log_level == "info"
    # As the Java reference.conf writes it, in the mp object.
    assert load_settings(write("mp { log-level=warn }\n")).log_level == "warn"


def test_log_level_unfiltered_maven_placeholder_is_the_default() -> None:
    # tests/data/java-alloc.conf: mp.log-level=${log.level}
    assert load_settings(str(JAVA_ALLOC)).log_level == "info"


def test_log_level_unknown_is_an_error(write: Write) -> None:
    path = write("mp.log-level = verbose\n")
    assert str(error_of(path)) == (
        f"{path}: mp.log-level: must be one of debug, info, warn, error, critical, "
        "got 'verbose'"
    )


def test_keys_we_do_not_read_may_hold_anything(write: Write) -> None:
    path = write(
        "mp.thread.pool { event-bus { min: 1, max: 16 } }\nmp.spi.x = [1, {a: b}]\nother = null\n"
    )
    assert load_settings(path).port == 9999


# ---------------------------------------------------------------- errors naming a key

KEY_ERRORS: list[tuple[str, str, str]] = [
    (
        "mp.net.alloc-server-port = abc",
        "mp.net.alloc-server-port",
        "must be an integer 1..65535, got 'abc'",
    ),
    (
        "mp.net.alloc-server-port = 0",
        "mp.net.alloc-server-port",
        "must be an integer 1..65535, got 0",
    ),
    ("mp.net.alloc-server-port = 65536", "mp.net.alloc-server-port", "got 65536"),
    ("mp.net.alloc-server-port = 99.5", "mp.net.alloc-server-port", "got 99.5"),
    ("mp.net.alloc-server-port = true", "mp.net.alloc-server-port", "got true"),
    ("mp.net.alloc-server-port = null", "mp.net.alloc-server-port", "must not be null"),
    ("mp.net.alloc-server-port = [1]", "mp.net.alloc-server-port", "got a list"),
    (
        "mp.net.alloc-server-protocol = ftp",
        "mp.net.alloc-server-protocol",
        "must be one of http, https, got 'ftp'",
    ),
    ("mp.net.alloc-server-protocol = HTTPS", "mp.net.alloc-server-protocol", "got 'HTTPS'"),
    ("mp.net.gateway-server-net = sctp", "mp.net.gateway-server-net",
     "must be one of tcp, udp, got 'sctp'"),
    ("mp.net.gateway-client-port = 65536", "mp.net.gateway-client-port", "got 65536"),
    ("mp.net.gateway-server-multicast = 10.0.0.1", "mp.net.gateway-server-multicast",
     "must be an IPv4 multicast address"),
    ("mp.net.gateway-client-multicast = ff02::1", "mp.net.gateway-client-multicast",
     "must be an IPv4 multicast address"),
    ("mp.net.snd_buf.gateway-client = -1", "mp.net.snd_buf.gateway-client", "got -1"),
    ("mp.net.rcv_buf.gateway-client = lots", "mp.net.rcv_buf.gateway-client",
     "must be a size such as 10k or 1m"),
    ("mp.alloc.udp-broadcast = anycast", "mp.alloc.udp-broadcast",
     "must be one of unicast, multicast, got 'anycast'"),
    # Below it, the exchange loop becomes a Redis round trip after another on the reactor.
    ("mp.alloc.share-handouts-interval = 1ms", "mp.alloc.share-handouts-interval",
     "must be 0 (off) or at least 10ms, got 1ms"),
    # An IPv6 UDP socket could reach no (IPv4) gateway and join no group.
    ('mp.net.gateway-server-net = udp\nmp.alloc.interface = "::1"\n'
     "mp.alloc.udp-broadcast = multicast", "mp.alloc.interface",
     "is '::1', an IPv6 address, but gateways over UDP are reached from IPv4"),
    ("mp.net.gateway-client-num = 0", "mp.net.gateway-client-num", "must be an integer 1..64"),
    ("mp.net = 5", "mp.net", "must be an object, got 5"),
    (
        "mp.core.max-packet-size = big",
        "mp.core.max-packet-size",
        "must be a size such as 10k or 1m, got 'big'",
    ),
    ("mp.core.max-packet-size = 0", "mp.core.max-packet-size", "must be between 1 and"),
    (
        "mp.core.max-packet-size = 4g",
        "mp.core.max-packet-size",
        "must be between 1 and 2147483647 bytes",
    ),
    ("mp.core.max-packet-size = 5s", "mp.core.max-packet-size", "got 5s"),
    ('mp.zk.server-address = ""', "mp.zk.server-address", "at least one host:port"),
    (
        'mp.zk.server-address = "h:99999"',
        "mp.zk.server-address",
        "port must be 1..65535, got 'h:99999'",
    ),
    ('mp.zk.server-address = "h:2181,,g:2181"', "mp.zk.server-address", "empty entry"),
    ('mp.zk.server-address = "h 1:2181"', "mp.zk.server-address", "entries must be host:port"),
    ('mp.zk.server-address = "h:2181/"', "mp.zk.server-address", "bad chroot"),
    ('mp.zk.server-address = ["h:2181"]', "mp.zk.server-address", "must be a string, got a list"),
    ('mp.zk.namespace = "a//b"', "mp.zk.namespace", "must be a ZooKeeper path"),
    ("mp.zk.digest = {a: 1}", "mp.zk.digest", "must be a string, got an object"),
    (
        "mp.zk.sessionTimeoutMs = soon",
        "mp.zk.sessionTimeoutMs",
        "must be a duration such as 5s or 500ms, got 'soon'",
    ),
    (
        "mp.zk.sessionTimeoutMs = 100ms",
        "mp.zk.sessionTimeoutMs",
        "must be between 1s and 1h, got 100ms",
    ),
    ("mp.zk.sessionTimeoutMs = -5", "mp.zk.sessionTimeoutMs", "must be a duration"),
    (
        "mp.zk.connectionTimeoutMs = 2d",
        "mp.zk.connectionTimeoutMs",
        "must be between 100ms and 1h, got 2d",
    ),
    ("mp.redis = 5", "mp.redis", "must be an object, got 5"),
    (
        "mp.redis.cluster-model = shard",
        "mp.redis.cluster-model",
        "must be one of single, sentinel, cluster, got 'shard'",
    ),
    (
        "mp.redis.cluster-model = sentinel",
        "mp.redis.sentinel-master",
        "required when mp.redis.cluster-model is sentinel",
    ),
    (
        'mp.redis { cluster-model = sentinel, sentinel-master = "" }',
        "mp.redis.sentinel-master",
        "required",
    ),
    ("mp.redis.nodes = 6379", "mp.redis.nodes", "must be a list like"),
    ("mp.redis.nodes = {a: 1}", "mp.redis.nodes", "got an object"),
    ("mp.redis.nodes = []", "mp.redis.nodes", "must list at least one host:port"),
    ("mp.redis.nodes = [6379]", "mp.redis.nodes", 'entries must be "host:port" strings, got 6379'),
    ("mp.redis.nodes = [{host: a, port: 1}]", "mp.redis.nodes", "got an object"),
    ('mp.redis.nodes = ["127.0.0.1"]', "mp.redis.nodes", "(no port)"),
    ('mp.redis.nodes = ["127.0.0.1:0"]', "mp.redis.nodes", "port must be 1..65535"),
    ('mp.redis.nodes = ["127.0.0.1:65536"]', "mp.redis.nodes", "port must be 1..65535"),
    ('mp.redis.nodes = ["::1:6379"]', "mp.redis.nodes", "entries must be host:port"),
    ('mp.redis.nodes = ["a:1", "b:x"]', "mp.redis.nodes", "'b:x'"),
    ("mp.redis.password = [1]", "mp.redis.password", "must be a string, got a list"),
    ("mp.redis.password = 1.5", "mp.redis.password", "must be a string, got 1.5"),
    ("mp.alloc.interface = localhost", "mp.alloc.interface", "must be an IP address"),
    ('mp.alloc.interface = ""', "mp.alloc.interface", "must be an IP address"),
    (
        "mp.alloc.refresh-interval = 1ms",
        "mp.alloc.refresh-interval",
        "must be between 100ms and 1d, got 1ms",
    ),
    ("mp.alloc.refresh-interval = often", "mp.alloc.refresh-interval", "must be a duration"),
    ("mp.alloc.change-delay = 1h", "mp.alloc.change-delay", "must be between 0s and 10m, got 1h"),
    (
        "mp.alloc.redis-connect-timeout = 0",
        "mp.alloc.redis-connect-timeout",
        "must be between 10ms",
    ),
    (
        "mp.alloc.redis-reply-timeout = 1d",
        "mp.alloc.redis-reply-timeout",
        "must be between 10ms and 5m",
    ),
    ("mp.alloc.retry-after = -1", "mp.alloc.retry-after", "must be 0..86400 seconds, got -1"),
    ("mp.alloc.retry-after = 2d", "mp.alloc.retry-after", "must be 0..86400 seconds"),
    ("mp.alloc.retry-after = later", "mp.alloc.retry-after", "must be a duration"),
    (
        "mp.alloc.push-timeout = 500ms",
        "mp.alloc.push-timeout",
        "must be between 1s and 10m, got 500ms",
    ),
    ("mp.alloc.broadcast-timeout = 0", "mp.alloc.broadcast-timeout", "must be between 1s"),
    (
        "mp.alloc.gateway-connect-timeout = 1h",
        "mp.alloc.gateway-connect-timeout",
        "must be between 100ms",
    ),
    ("mp.alloc.shutdown-grace = x", "mp.alloc.shutdown-grace", "must be a duration"),
    ("mp.alloc.drain-delay = soon", "mp.alloc.drain-delay", "must be a duration"),
    ("mp.alloc.drain-delay = 11m", "mp.alloc.drain-delay", "must be between 0s and 10m, got 11m"),
    ("mp.alloc.drain-delay = -1s", "mp.alloc.drain-delay", "must be"),
    (
        "mp.alloc.max-request-size = 100",
        "mp.alloc.max-request-size",
        "must be between 1024 and 16777216 bytes",
    ),
    (
        "mp.alloc.max-users-per-push = 0",
        "mp.alloc.max-users-per-push",
        "must be an integer 1..1000000, got 0",
    ),
    ("mp.alloc.max-users-per-push = 1k", "mp.alloc.max-users-per-push", "got '1k'"),
    ("mp.alloc.max-users-per-push = 2.5", "mp.alloc.max-users-per-push", "got 2.5"),
    (
        "mp.alloc.max-inflight-pushes = 1000001",
        "mp.alloc.max-inflight-pushes",
        "must be an integer 1..1000000",
    ),
    (
        "mp.alloc.max-inflight-pushes = 999",
        "mp.alloc.max-inflight-pushes",
        "must be at least mp.alloc.max-users-per-push (1000), got 999",
    ),
    (
        "mp.alloc { max-users-per-push = 100, max-inflight-pushes = 99 }",
        "mp.alloc.max-inflight-pushes",
        "must be at least mp.alloc.max-users-per-push (100), got 99",
    ),
    ("mp.alloc.max-inflight-pushes = null", "mp.alloc.max-inflight-pushes", "must not be null"),
    (
        "mp.alloc.request-head-timeout = 10ms",
        "mp.alloc.request-head-timeout",
        "must be between 100ms and 1h, got 10ms",
    ),
    ("mp.alloc.request-head-timeout = 0", "mp.alloc.request-head-timeout", "got 0s"),
    ("mp.alloc.request-head-timeout = slow", "mp.alloc.request-head-timeout", "must be a duration"),
    (
        "mp.alloc.max-pending-per-gateway = 0",
        "mp.alloc.max-pending-per-gateway",
        "must be an integer 1..1000000, got 0",
    ),
    ("mp.alloc.max-pending-per-gateway = -5", "mp.alloc.max-pending-per-gateway", "got -5"),
    ('mp.alloc.data-dir = ""', "mp.alloc.data-dir", "must not be empty"),
    (
        "mp.alloc.tls-cert = /x.pem",
        "mp.alloc.tls-key",
        "must be set together with mp.alloc.tls-cert",
    ),
    (
        "mp.alloc.tls-key = /x.pem",
        "mp.alloc.tls-cert",
        "must be set together with mp.alloc.tls-key",
    ),
    ("mp.alloc.access-log = 5.5", "mp.alloc.access-log", "must be a string"),
    ("mp.alloc = []", "mp.alloc", "must be an object, got a list"),
    ('mp.alloc.push-token = "short"', "mp.alloc.push-token", "must be 16 to 4096 characters"),
    (
        'mp.alloc.push-token = "has a space in it, 1234"',
        "mp.alloc.push-token",
        "must be visible ASCII characters only",
    ),
    ('mp.alloc.push-token = "tökentökentökentöken"', "mp.alloc.push-token", "visible ASCII"),
    ("mp.alloc.push-token = [1]", "mp.alloc.push-token", "must be a string, got a list"),
    ("mp.alloc.push-allow = 5", "mp.alloc.push-allow", "must be a list like"),
    ("mp.alloc.push-allow = null", "mp.alloc.push-allow", "must not be null"),
    ("mp.alloc.push-allow = [5]", "mp.alloc.push-allow", 'entries must be "address/prefix"'),
    (
        'mp.alloc.push-allow = ["localhost"]',
        "mp.alloc.push-allow",
        "entries must be networks like 10.0.0.0/8 or ::1/128, got 'localhost'",
    ),
    ('mp.alloc.push-allow = ["10.0.0.0/33"]', "mp.alloc.push-allow", "got '10.0.0.0/33'"),
    (
        'mp.alloc.push-allow = ["10.0.0.1/8"]',
        "mp.alloc.push-allow",
        "'10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?",
    ),
]


@pytest.mark.parametrize(("text", "key", "fragment"), KEY_ERRORS, ids=[k for _, k, _ in KEY_ERRORS])
def test_bad_values_name_the_file_and_the_key(
    write: Write, text: str, key: str, fragment: str
) -> None:
    path = write(text + "\n")
    err = error_of(path)
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert fragment in message, message
    assert (err.source, err.key) == (path, key)


# pyhocon joins a concatenation holding a duration, a boolean or null as the
# str() of each part ('0:00:30please'); the message quotes the file's text.
ECHOES: list[tuple[str, str, str]] = [
    ("mp.alloc.refresh-interval = 30 seconds please", "mp.alloc.refresh-interval",
     "must be a duration such as 5s or 500ms, got '30 seconds please'"),
    ("mp.alloc.refresh-interval = 10s 5ms", "mp.alloc.refresh-interval",
     "must be a duration such as 5s or 500ms, got '10s 5ms'"),
    ("mp.alloc.change-delay = 1 minute or so   // a comment", "mp.alloc.change-delay",
     "must be a duration such as 5s or 500ms, got '1 minute or so'"),
    ("mp.alloc.max-request-size = 5 KiB extra", "mp.alloc.max-request-size",
     "must be a size such as 10k or 1m, got '5 KiB extra'"),
    ("mp.alloc.max-request-size = 5m extra", "mp.alloc.max-request-size",
     "must be a size such as 10k or 1m, got '5m extra'"),
    ("mp.net.alloc-server-port = true 80", "mp.net.alloc-server-port",
     "must be an integer 1..65535, got 'true 80'"),
    ('mp.alloc.refresh-interval = "every" 30s', "mp.alloc.refresh-interval",
     "must be a duration such as 5s or 500ms, got 'every 30s'"),
]


@pytest.mark.parametrize(("text", "key", "problem"), ECHOES, ids=[t for t, _, _ in ECHOES])
def test_a_concatenated_value_is_echoed_as_written(
    write: Write, text: str, key: str, problem: str
) -> None:
    path = write(text + "\n")
    assert str(error_of(path)) == f"{path}: {key}: {problem}"


def test_a_concatenation_in_an_included_file_is_echoed_as_written(write: Write) -> None:
    write("mp.alloc.refresh-interval = 30 seconds please # a comment\n", "inc.conf")
    path = write('include "inc.conf"\n')
    assert "got '30 seconds please'" in str(error_of(path))


def test_a_concatenated_string_value_is_the_text_as_written(write: Write) -> None:
    # As Java reads it: the text, whitespace between the parts kept.
    path = write("mp.redis.password = 10s  true\nmp.zk.digest = null x\n")
    loaded = load_settings(path)
    assert (loaded.redis.password, loaded.zk.digest) == ("10s  true", "null x")


def test_the_documented_example_message(write: Write) -> None:
    path = write("mp.net.alloc-server-port = abc\n")
    assert (
        str(error_of(path))
        == f"{path}: mp.net.alloc-server-port: must be an integer 1..65535, got 'abc'"
    )


def test_https_with_unreadable_cert_names_the_key(write: Write, tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("key")
    path = write(
        "mp.net.alloc-server-protocol = https\n"
        f'mp.alloc {{ tls-cert = "{tmp_path / "nope.pem"}", tls-key = "{tmp_path / "key.pem"}" }}\n'
    )
    message = str(error_of(path))
    assert message.startswith(f"{path}: mp.alloc.tls-cert: cannot read '{tmp_path / 'nope.pem'}'")
    assert "No such file or directory" in message


def test_https_with_a_directory_as_key_names_the_key(write: Write, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("cert")
    path = write(
        "mp.net.alloc-server-protocol = https\n"
        f'mp.alloc {{ tls-cert = "{tmp_path / "cert.pem"}", tls-key = "{tmp_path}" }}\n'
    )
    assert error_of(path).key == "mp.alloc.tls-key"


def test_config_error_is_one_line_even_for_multiline_problems() -> None:
    err = ConfigError("a.conf", "k", "first\nsecond\r\n third")
    assert str(err) == "a.conf: k: first second third"


def test_config_error_survives_pickling() -> None:
    err = ConfigError("a.conf", "mp.x", "bad")
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.key) == (str(err), "mp.x")


# ---------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.conf")
    assert str(error_of(path)) == f"{path}: cannot read config file: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    err = error_of(str(tmp_path))
    assert str(err) == f"{tmp_path}: cannot read config file: Is a directory"
    assert err.key is None


def test_unreadable_file(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root (CI runs as root,
    # so a chmod 0 file would be readable there).
    path = tmp_path / "mpush.conf"
    path.mkdir()
    assert str(error_of(str(path))) == f"{path}: cannot read config file: Is a directory"


def test_path_through_a_file(write: Write) -> None:
    path = write("x = 1\n") + "/mpush.conf"
    assert str(error_of(path)) == f"{path}: cannot read config file: Not a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(b'mp.redis.password = "caf\xe9"\n')
    assert str(error_of(str(path))) == f"{path}: cannot read config file: not UTF-8 text (byte 24)"


def test_utf8_bom_and_non_ascii_values(tmp_path: Path) -> None:
    path = tmp_path / "bom.conf"
    path.write_bytes('\ufeffmp.redis.password = "密码" // 注释\n'.encode())
    assert load_settings(str(path)).redis.password == "密码"


def test_huge_file_is_refused(write: Write) -> None:
    path = write("# padding\n" * 200_000)
    assert "larger than" in str(error_of(path))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('mp.redis {\n  nodes = ["a:1"]\n', "syntax error at line 3"),
        (
            'mp.net.alloc-server-port = 1\nmp.zk {\n  server-address = "a:1"\n}}\n',
            "syntax error at line 4",
        ),
        ("a = [1, 2\n", "syntax error at line"),
        (
            'mp.redis.nodes:[] s//["127.0.0.1:6379"]\n',
            "syntax error: ",
        ),  # a typo in mpush's own reference.conf
    ],
)
def test_syntax_errors_are_one_short_line(write: Write, text: str, where: str) -> None:
    path = write(text)
    err = error_of(path)
    message = str(err)
    assert message.startswith(f"{path}: {where}"), message
    assert "\n" not in message and len(message) < len(path) + 250
    assert err.key is None


def test_top_level_list_is_refused(write: Write) -> None:
    path = write("[1, 2]\n")
    assert str(error_of(path)) == f"{path}: the top level must be an object, not a list"


def test_parse_settings_without_a_file() -> None:
    assert parse_settings("mp.net.alloc-server-port = 1234", "inline").port == 1234
    with pytest.raises(ConfigError, match=r"^inline: mp.net.alloc-server-port: "):
        parse_settings("mp.net.alloc-server-port = x", "inline")


# ---------------------------------------------------------------- includes


def test_classpath_include_is_skipped(write: Write) -> None:
    path = write('include classpath("reference.conf")\nmp.net.alloc-server-port = 9001\n')
    assert load_settings(path).port == 9001


def test_required_classpath_include_inside_an_object_is_skipped(write: Write) -> None:
    path = write(
        'mp { include required(classpath("reference.conf")), net.alloc-server-port = 9002 }\n'
    )
    assert load_settings(path).port == 9002


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
def test_missing_file_include_is_ignored(write: Write) -> None:
    path = write(
        'include "reference.conf"\n'
        'include file("also-missing.conf")\n'
        "mp.net.alloc-server-port = 9003\n"
    )
    assert load_settings(path).port == 9003


def test_missing_required_include_is_an_error(write: Write) -> None:
    path = write('mp.x = 1\ninclude required("reference.conf")\n')
    assert str(error_of(path)) == f"{path}: line 2: include required 'reference.conf': no such file"


def test_file_include_is_merged_in_order(write: Write) -> None:
    write(
        "mp.net.alloc-server-port = 9100\nmp.zk.namespace = fromref\nmp.redis.password = ref\n",
        "ref.conf",
    )
    path = write('mp.zk.namespace = before\ninclude "ref.conf"\nmp.net.alloc-server-port = 9200\n')
    loaded = load_settings(path)
    assert loaded.port == 9200  # later in the including file wins
    assert loaded.zk.namespace == "fromref"  # the include overrides what came before it
    assert loaded.redis.password == "ref"


def test_nested_file_includes_resolve_relative_to_the_including_file(
    write: Write, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    write('include "inner.conf"\n', "sub/outer.conf")
    write("mp.net.alloc-server-port = 9300\n", "sub/inner.conf")
    assert load_settings(write('include "sub/outer.conf"\n')).port == 9300


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('include url("http://example.invalid/x.conf")', "include url(...) is not supported"),
        ('include "https://example.invalid/x.conf"', "include url(...) is not supported"),
        (
            'include required(url("http://example.invalid/x.conf"))',
            "include url(...) is not supported",
        ),
        ('include package("os:x.conf")', "include package(...) is not supported"),
        ('include "*.conf"', "include patterns are not supported"),
    ],
)
def test_includes_that_are_refused(write: Write, line: str, problem: str) -> None:
    path = write(f"mp.a = 1\n{line}\n")
    message = str(error_of(path))
    assert message.startswith(f"{path}: line 2: {problem}"), message


def test_url_include_in_an_included_file_is_refused_naming_that_file(write: Write) -> None:
    inner = write('include url("http://example.invalid/x.conf")\n', "inner.conf")
    path = write('include "inner.conf"\n')
    assert str(error_of(path)).startswith(f"{inner}: line 1: include url(...)")


def test_include_cycle_is_an_error(write: Write) -> None:
    write('include "b.conf"\n', "a.conf")
    b = write('include "a.conf"\n', "b.conf")
    path = write('include "a.conf"\n', "main.conf")
    assert str(error_of(path)) == f"{b}: line 1: include 'a.conf' makes a cycle"


def test_syntax_error_in_an_included_file_names_that_file(write: Write) -> None:
    inner = write("mp.redis {\n", "inner.conf")
    path = write('include "inner.conf"\n')
    assert str(error_of(path)).startswith(f"{inner}: syntax error at line 2")


def test_include_word_in_strings_comments_and_keys_is_not_an_include(write: Write) -> None:
    path = write(
        '// include url("http://example.invalid/")\n'
        '# include "nope.conf"\n'
        'mp.redis.password = "include url(\\"http://example.invalid/\\")"\n'
        "mp.include.x = 1\n"
    )
    assert load_settings(path).redis.password == 'include url("http://example.invalid/")'


def test_udp_gateways_on_an_any_ipv6_listener_bind_any_ipv4(write: Write) -> None:
    from mpush.daemon.cluster_parts import make_udp_gateways
    from tests.fakes import View

    loaded = load_settings(write('mp.net.gateway-server-net = udp\nmp.alloc.interface = "::"\n'
                                 "mp.alloc.udp-broadcast = multicast"))
    assert loaded.alloc.interface == "::"  # the HTTP listener's, as written
    gateways = make_udp_gateways(loaded, View())  # type: ignore[arg-type]
    assert gateways.options.interface == "0.0.0.0"  # nothing bound before its start


@pytest.mark.parametrize(("interface", "bound"), [
    ("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::", "0.0.0.0"),
])
def test_the_udp_gateway_socket_binds_ipv4(interface: str, bound: str) -> None:
    assert udp_bind_address(interface) == bound


@pytest.mark.parametrize("interface", ["::1", "fe80::1", "2001:db8::5"])
def test_a_specific_ipv6_interface_cannot_reach_udp_gateways(interface: str) -> None:
    with pytest.raises(ValueError, match="an IPv6 address, but gateways over UDP"):
        udp_bind_address(interface)
