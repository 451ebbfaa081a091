"""``GET /config``: the settings in effect with their sources, secrets never shown.

Unit tests load a real config file and ask through a real Site over a
StringTransport; one end-to-end test asks the daemon's service tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.address import IPv4Address

from mpush.config import load_settings
from mpush.web.config import ConfigResource
from mpush.web.push_access import PushAccess
from mpush.web.root import RootResource
from mpush.web.site import AllocSite
from tests.fakes import Fakes
from tests.harness.redis import RedisServer
from tests.harness.stack import running_stack
from tests.harness.web import request
from tests.harness.zookeeper import ZooKeeperServer
from tests.http_exchange import connect, split

TOKEN = "config-token-0123456789"
PASSWORD = "redis-pass-do-not-show"

CONFIG = f"""
mp {{
  redis {{ password = "{PASSWORD}", nodes = ["127.0.0.1:6390"] }}
  alloc {{
    push-token = "{TOKEN}"
    refresh-interval = 10s
    refesh-interval = 1s
  }}
}}
"""


def config_site(tmp_path: Path, *, token: str | None = TOKEN) -> tuple[AllocSite, str]:
    path = tmp_path / "mpush.conf"
    path.write_text(CONFIG)
    settings = load_settings(str(path))
    root = RootResource(Fakes().policy)
    access = PushAccess(token=token, allow=("127.0.0.1/32",))
    root.putChild(b"config", ConfigResource(settings, access))
    return AllocSite(root), str(path)


def get(site: AllocSite, **headers: str) -> tuple[int, dict[str, str], bytes]:
    exchange = connect(site, IPv4Address("TCP", "127.0.0.1", 40000))
    lines = [b"GET /config HTTP/1.1", b"Host: 127.0.0.1:9999"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    exchange.feed(b"\r\n".join(lines) + b"\r\n\r\n")
    return split(exchange.raw)


def by_key(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["key"]: entry for entry in document["keys"]}


def test_sources_values_and_unknown_keys(tmp_path: Path) -> None:
    site, path = config_site(tmp_path)
    status, headers, body = get(site, Authorization=f"Bearer {TOKEN}")
    assert status == 200
    assert (headers["content-type"], headers["cache-control"]) == ("application/json", "no-store")
    document = json.loads(body)
    assert document["file"] == path
    keys = by_key(document)
    assert keys["mp.alloc.refresh-interval"] == {
        "key": "mp.alloc.refresh-interval", "value": "10s", "source": "file", "secret": False}
    assert keys["mp.alloc.push-timeout"]["source"] == "default"
    assert keys["mp.redis.nodes"]["source"] == "file"
    assert document["unknownKeys"] == [{"key": "mp.alloc.refesh-interval",
                                        "didYouMean": "mp.alloc.refresh-interval"}]


def test_secrets_are_only_set_or_unset(tmp_path: Path) -> None:
    site, _ = config_site(tmp_path)
    _, _, body = get(site, Authorization=f"Bearer {TOKEN}")
    keys = by_key(json.loads(body))
    assert keys["mp.redis.password"] == {"key": "mp.redis.password", "value": "set",
                                         "source": "file", "secret": True}
    assert keys["mp.alloc.push-token"]["value"] == "set"
    assert keys["mp.zk.digest"] == {"key": "mp.zk.digest", "value": "set",
                                    "source": "default", "secret": True}
    assert PASSWORD.encode() not in body and TOKEN.encode() not in body


def test_the_push_access_rule_applies(tmp_path: Path) -> None:
    site, _ = config_site(tmp_path)
    status, headers, _ = get(site)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    status, _, _ = get(site, Authorization="Bearer wrong-token-0123456789")
    assert status == 401
    open_site, _ = config_site(tmp_path, token=None)
    assert get(open_site)[0] == 200
    assert get(open_site, Origin="http://evil.example")[0] == 403


@pytest_twisted.ensureDeferred
async def test_the_daemon_serves_its_own_config(tmp_path: Path, zk_server: ZooKeeperServer,
                                                zk_namespace: str,
                                                redis_server: RedisServer) -> None:
    async with running_stack(tmp_path, zk_server.connect_string, zk_namespace,
                             redis_server.port) as stack:
        status, _, body = await request("GET", stack.url + "/config")
    assert status == 200
    document = json.loads(body)
    keys = by_key(document)
    assert document["file"].endswith("mpush.conf")
    assert keys["mp.net.alloc-server-port"] == {"key": "mp.net.alloc-server-port",
                                                "value": str(stack.port), "source": "file",
                                                "secret": False}
    assert keys["mp.redis.password"]["value"] == "unset"
