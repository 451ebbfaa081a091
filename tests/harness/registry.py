"""Register mpush server nodes in ZooKeeper exactly as the Java servers do.

What the Java server (mpush 0.8.x, ``mpush-zk`` ``ZKClient`` and
``ZKServiceRegistryAndDiscovery``, Curator 2.12, fastjson 1.2.47) writes:

* Curator ``namespace("mpush")``: every path lives under ``/mpush``.
* ``authorization("digest", "mpush")``: the bare digest string is the auth
  data. ZooKeeper's digest provider turns it into the id
  ``"mpush:" + base64(sha1("mpush"))`` = ``mpush:IoF5XrL443rOdy6w434vrj+58TQ=``
  (the part before the first ``:`` is the user; there is none, so the whole
  string is both user and password).
* An ACL provider that returns ``CREATOR_ALL_ACL`` for every path, so the
  namespace node, ``/cluster``, ``/cluster/cs`` and the server nodes all get
  ``digest:mpush:IoF5...=`` with all permissions (Curator creates parents
  as PERSISTENT nodes through the same ACL provider).
* Server nodes: ``/cluster/cs/<uuid>`` and ``/cluster/gs/<uuid>``, mode
  EPHEMERAL (not sequential); a node that already exists is deleted first.
* Data: ``JSON.toJSONString(CommonServiceNode)``: fastjson sorts bean
  properties by name and leaves nulls out, so ``{"attrs":{...},"host":..,
  "port":..}``; a gateway node has no attrs: ``{"host":..,"port":..}``.
* On every Curator RECONNECTED (same session after a blip, or a new session
  after expiry) the server deletes and re-creates its ephemeral nodes.

Synchronous kazoo code: a test and demo helper, not daemon code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Mapping
from types import EllipsisType, TracebackType
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError
from kazoo.retry import KazooRetry
from kazoo.security import ACL, CREATOR_ALL_ACL, OPEN_ACL_UNSAFE

KIND_PATHS = {"cs": "/cluster/cs", "gs": "/cluster/gs", "ws": "/cluster/ws"}

# mp.net.connect-server-register-attr in the Java reference config.
JAVA_DEFAULT_CS_ATTRS: Mapping[str, Any] = {"weight": 1}


def digest_acl_id(digest: str) -> str:
    """The ACL id ZooKeeper derives from ``addauth digest <digest>``."""
    user = digest.split(":", 1)[0]
    sha = base64.b64encode(hashlib.sha1(digest.encode("utf-8")).digest()).decode("ascii")
    return f"{user}:{sha}"


def node_json(host: str, port: int, attrs: Mapping[str, Any] | None = None) -> bytes:
    """The bytes the Java server stores for a node (fastjson's output)."""
    doc: dict[str, Any] = {}
    if attrs is not None:
        doc["attrs"] = dict(attrs)
    doc["host"] = host
    doc["port"] = port
    # fastjson: compact, UTF-8 as is (no \\u escapes), keys sorted.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class NodeRegistrar:
    """One ZooKeeper session that owns some ephemeral server nodes.

    Paths given and returned are relative to the namespace, as in the Java
    code (``/cluster/cs/<uuid>``); :meth:`full_path` adds the namespace.
    """

    def __init__(self, connect_string: str, *, namespace: str | None = "mpush",
                 digest: str | None = "mpush", session_timeout: float = 5.0,
                 start_timeout: float = 10.0, reregister: bool = True) -> None:
        self.namespace = (namespace or "").strip("/")
        self.prefix = f"/{self.namespace}" if self.namespace else ""
        self.digest = digest or None
        # Curator applies the ACL provider only when a digest is configured;
        # otherwise it uses its default, world-open ACL.
        self.acl: list[ACL] = list(CREATOR_ALL_ACL if self.digest else OPEN_ACL_UNSAFE)
        self.reregister = reregister
        self.start_timeout = start_timeout
        # No chroot: kazoo does not create a missing chroot node, Curator
        # does create its namespace node, so we create /mpush ourselves.
        self.client = KazooClient(
            hosts=connect_string,
            timeout=session_timeout,
            auth_data=[("digest", self.digest)] if self.digest else None,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
        )
        self._nodes: dict[str, bytes] = {}
        self._was_connected = False
        self._closed = False
        # How many re-registrations (after reconnects) have completed.
        self.reregistrations = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> NodeRegistrar:
        self.client.add_listener(self._on_state)
        self.client.start(timeout=self.start_timeout)
        self._was_connected = True
        return self

    def close(self) -> None:
        """End the session: ZooKeeper deletes its ephemeral nodes at once."""
        if self._closed:
            return
        self._closed = True
        self._nodes.clear()
        try:
            self.client.stop()
        finally:
            self.client.close()

    def __enter__(self) -> NodeRegistrar:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def session_id(self) -> int | None:
        cid = self.client.client_id
        return cid[0] if cid else None

    # -- nodes -------------------------------------------------------------

    def full_path(self, path: str) -> str:
        return self.prefix + path

    def register(self, kind: str, host: str, port: int,
                 attrs: Mapping[str, Any] | EllipsisType | None = ...,
                 *, name: str | None = None) -> str:
        """Register a server like the Java one; returns its node path.

        ``attrs=...`` means the Java default: ``{"weight":1}`` for a
        connection server, none for a gateway server.
        """
        if attrs is ...:
            attrs = JAVA_DEFAULT_CS_ATTRS if kind == "cs" else None
        return self.register_raw(kind, node_json(host, port, attrs), name=name)

    def register_raw(self, kind: str, data: bytes, *, name: str | None = None) -> str:
        """Register a node with arbitrary bytes (to test malformed data)."""
        path = f"{KIND_PATHS[kind]}/{name or uuid.uuid4()}"
        self._create(path, data)
        self._nodes[path] = data
        return path

    def update(self, path: str, host: str, port: int,
               attrs: Mapping[str, Any] | None = None) -> None:
        self.update_raw(path, node_json(host, port, attrs))

    def update_raw(self, path: str, data: bytes) -> None:
        self.client.set(self.full_path(path), data)
        self._nodes[path] = data

    def unregister(self, path: str) -> None:
        self._nodes.pop(path, None)
        try:
            self.client.delete(self.full_path(path))
        except NoNodeError:
            pass

    def paths(self) -> list[str]:
        return list(self._nodes)

    # -- internals ---------------------------------------------------------

    def _create(self, path: str, data: bytes) -> None:
        full = self.full_path(path)
        # The Java server deletes a leftover node first, then creates it.
        if self.client.exists(full) is not None:
            try:
                self.client.delete(full)
            except NoNodeError:
                pass
        self.client.create(full, data, acl=self.acl, ephemeral=True, makepath=True)

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's connection thread, which must not block: the
        # re-registration (synchronous calls) goes to a thread of its own.
        if state == KazooState.CONNECTED and self._was_connected and self.reregister:
            threading.Thread(target=self._register_again, name="mpush-reregister",
                             daemon=True).start()

    def _register_again(self) -> None:
        # Iterate over a snapshot: the test thread may change _nodes meanwhile.
        for path, data in list(self._nodes.items()):
            if self._nodes.get(path) is not data:
                continue  # unregistered or updated meanwhile
            try:
                self._create(path, data)
            except Exception:
                # Best effort, like the Java code (it logs and goes on).
                continue
        self.reregistrations += 1
