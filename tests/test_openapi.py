"""``/openapi.json``: the document is well formed, and it is true.

True means: real requests to the in-process daemon (``makeService`` from a
config file, real ZooKeeper and Redis, fake mpush nodes over real TCP) get
only answers the document declares for their path and method, with bodies
matching the declared schemas and the declared headers present; and every
status the document declares (but ``500`` of ``POST /push``, which only a
bug produces) is produced by at least one of those requests. So the
document and the server cannot drift apart unnoticed.

The schemas are checked by a small validator for the JSON Schema subset the
document uses; the structure test fails if the document starts using a
keyword the validator does not know.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.web.http_headers import Headers

from mpush.outcomes import PushReason
from mpush.web.openapi import METHODS, OPENAPI_VERSION, build_document
from tests.harness.redis import RedisServer
from tests.harness.registry import NodeRegistrar
from tests.harness.stack import Stack, running_stack
from tests.harness.web import request, sleep, until
from tests.harness.zookeeper import ZooKeeperServer

Json = dict[str, Any]

DOC = build_document()
PATHS = ("/", "/ws", "/push", "/health", "/index.html", "/openapi.json", "/metrics", "/cluster",
         "/users/{userId}", "/config")
USERS = "/users/{userId}"
TOKEN = "s3cret-token-0123456"
MAX_REQUEST_SIZE = 65536  # the default mp.alloc.max-request-size
LINE_LIMIT = 16384  # twisted.web's longest request line or header line
# What any operation answers before a resource sees the request.
CONNECTION_LEVEL = ("400", "408", "413", "414", "431")

# ------------------------------------------------------------ the validator

SCHEMA_KEYWORDS = frozenset({
    "$ref", "type", "enum", "properties", "required", "additionalProperties", "items",
    "minimum", "maximum", "minItems", "minLength", "pattern", "description",
})
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def resolve(node: Json, doc: Json = DOC) -> Json:
    """Follows ``$ref`` (local JSON pointers) until a node without one."""
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"non-local $ref {ref}"
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(target, dict) and part in target, f"$ref {ref} does not resolve"
            target = target[part]
        node = target
        seen += 1
        assert seen < 20, f"$ref loop at {ref}"
    return node


def errors(schema: Json, value: Any, where: str = "$") -> list[str]:
    """What is wrong with ``value`` against ``schema`` (empty: valid)."""
    schema = resolve(schema)
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{where}: {value!r:.80} is not of type {kinds}"]
    if "enum" in schema and not any(value == e and type(value) is type(e)
                                    for e in schema["enum"]):
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{where}: {value!r:.80} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{where}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                found += errors(schema["items"], item, f"{where}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                found.append(f"{where}: {key} is missing")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += errors(properties[key], item, f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unexpected property {key}")
            elif isinstance(extra, dict):
                found += errors(extra, item, f"{where}.{key}")
    return found


def walk(node: Any, where: str = "#") -> list[tuple[str, Any]]:
    """Every (pointer, node) in the document."""
    out = [(where, node)]
    if isinstance(node, dict):
        for key, item in node.items():
            out += walk(item, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out += walk(item, f"{where}/{i}")
    return out


def schemas_in(doc: Json) -> list[tuple[str, Json]]:
    """Every schema object: components.schemas, media types', headers', and nested ones."""
    roots = [(f"#/components/schemas/{k}", v) for k, v in doc["components"]["schemas"].items()]
    for where, node in walk(doc):
        if where.startswith("#/components/schemas"):
            continue
        if isinstance(node, dict) and isinstance(node.get("schema"), dict):
            roots.append((where + "/schema", node["schema"]))
    out: list[tuple[str, Json]] = []

    def nested(where: str, schema: Json) -> None:
        out.append((where, schema))
        for key, sub in schema.get("properties", {}).items():
            nested(f"{where}/properties/{key}", sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                nested(f"{where}/{key}", schema[key])

    for where, schema in roots:
        nested(where, schema)
    return out


def operations(doc: Json = DOC) -> list[tuple[str, str, Json]]:
    return [(path, method, op) for path, item in doc["paths"].items()
            for method, op in item.items()]


# ------------------------------------------------------------ the document


def test_document_is_well_formed_openapi() -> None:
    doc = json.loads(json.dumps(DOC))  # what is served: plain JSON
    assert doc["openapi"] == OPENAPI_VERSION and OPENAPI_VERSION.startswith("3.1.")
    assert isinstance(doc["info"]["title"], str) and isinstance(doc["info"]["version"], str)
    assert set(doc) <= {"openapi", "info", "paths", "components", "servers", "tags"}
    assert tuple(doc["paths"]) == PATHS
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    for path, item in doc["paths"].items():
        assert path.startswith("/") and set(item) == set(METHODS), path
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert isinstance(op.get("summary"), str), where
            assert op["responses"], where
            for status, answer in op["responses"].items():
                assert re.fullmatch(r"[1-5][0-9][0-9]", status), (where, status)
                answer = resolve(answer, doc)
                assert isinstance(answer.get("description"), str), (where, status)
                for media, content in answer.get("content", {}).items():
                    assert re.fullmatch(
                        r"[a-z]+/[a-z.+-]+(; version=0\.0\.4)?(; charset=utf-8)?", media), media
                    assert "schema" in content, (where, status, media)
                for name, header in answer.get("headers", {}).items():
                    header = resolve(header, doc)
                    assert "schema" in header and "description" in header, (where, name)
            for requirement in op.get("security", []):
                assert set(requirement) <= set(schemes), where
            if "requestBody" in op:
                assert op["requestBody"]["content"], where
    # Every $ref resolves, and every schema keyword is one the validator knows.
    refs = [node["$ref"] for _, node in walk(doc) if isinstance(node, dict) and "$ref" in node]
    assert len(refs) > 50
    for ref in refs:
        resolve({"$ref": ref}, doc)
    for where, schema in schemas_in(doc):
        assert set(schema) <= SCHEMA_KEYWORDS, (where, set(schema) - SCHEMA_KEYWORDS)
        kinds = schema.get("type", [])
        for kind in kinds if isinstance(kinds, list) else [kinds]:
            assert kind in _TYPES, (where, kind)
        for key in schema.get("required", []):
            assert key in schema.get("properties", {}), (where, key)


def test_the_document_says_what_the_brief_asks() -> None:
    push = DOC["paths"]["/push"]["post"]
    assert set(push["responses"]) == {"200", "400", "401", "403", "408", "413", "414", "415",
                                      "431", "500", "503"}
    assert push["security"] == [{"bearer": []}, {}]
    assert "only a bug" in push["description"] and "500" in DOC["info"]["description"]
    assert set(DOC["paths"]["/"]["get"]["responses"]) == {"200", "503", *CONNECTION_LEVEL}
    headers = {(path, method, status): set(resolve(answer).get("headers", {}))
               for path, method, op in operations() for status, answer in op["responses"].items()}
    assert headers[("/", "get", "503")] == {"Retry-After"}
    assert headers[("/push", "post", "503")] == {"Retry-After"}
    assert headers[("/push", "post", "401")] == {"WWW-Authenticate"}
    assert headers[("/push", "get", "405")] == {"Allow"}
    assert set(DOC["paths"]["/cluster"]["get"]["responses"]) == {"200", "401", "403",
                                                                  *CONNECTION_LEVEL}
    assert set(DOC["paths"][USERS]["get"]["responses"]) == {"200", "401", "403", "404", "503",
                                                            *CONNECTION_LEVEL}
    assert set(DOC["paths"]["/config"]["get"]["responses"]) == {"200", "401", "403",
                                                                 *CONNECTION_LEVEL}
    for path in ("/cluster", USERS, "/config"):
        assert DOC["paths"][path]["get"]["security"] == push["security"]
        assert headers[(path, "get", "401")] == {"WWW-Authenticate"}
    assert all(op["parameters"][0]["name"] == "userId" for op in DOC["paths"][USERS].values())
    # Every field docs/api.md documents for a push request is in the schema.
    readme = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    table = readme.split("### `POST /push`")[1].split("The Java alloc's body")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert documented and documented == set(
        DOC["components"]["schemas"]["PushRequest"]["properties"])


def test_the_validator_can_say_no() -> None:
    schemas = DOC["components"]["schemas"]
    assert errors(schemas["Error"], {"error": "x", "status": 404}) == []
    assert errors(schemas["Error"], {"error": "x"})  # status missing
    assert errors(schemas["Error"], {"error": "x", "status": 200})  # not an error status
    assert errors(schemas["Error"], {"error": "x", "status": 400, "extra": 1})
    answer = {"results": [{"userId": None, "clientType": None, "result": "offline",
                           "gateway": None, "ms": 0.5, "reason": "no_route", "code": None}],
              "summary": {"success": 0, "failure": 0, "offline": 1, "timeout": 0}}
    assert errors(schemas["PushAnswer"], answer) == []
    answer["results"][0]["result"] = "lost"
    assert errors(schemas["PushAnswer"], answer)
    row = answer["results"][0]
    row.update(result="failure", reason="gateway_error", code=2)
    assert errors(schemas["PushAnswer"], answer) == []
    for bad in ({"reason": "route changed twice"}, {"code": "2"}, {"reason": None, "code": 2.5}):
        assert errors(schemas["PushAnswer"], {**answer, "results": [{**row, **bad}]}), bad
    assert errors(schemas["Allocation"], "1.2.3.4:3000,5.6.7.8:3000") == []
    assert errors(schemas["Allocation"], "1.2.3.4:3000,\n")
    assert errors(schemas["PushRequest"], {"msgType": 4, "timeout": 999, "tags": []})
    assert errors(schemas["Health"], {"status": "ok"})
    assert errors({"type": "boolean"}, 1) and errors({"type": "integer"}, True)


def test_the_push_reasons_are_exactly_the_vocabulary() -> None:
    # Generated from the StrEnum: the document names every word, and no other.
    reason = DOC["components"]["schemas"]["PushResult"]["properties"]["reason"]
    assert reason["type"] == ["string", "null"]
    assert reason["enum"] == [*(m.value for m in PushReason), None]
    assert DOC["components"]["schemas"]["PushResult"]["required"][-2:] == ["reason", "code"]
    # docs/api.md documents every word, and no other, in its table of reasons.
    api = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    table = api.split("| `reason` | when |")[1].split("\n\n")[0]
    assert re.findall(r"^\| `(\w+)` \|", table, re.M) == [m.value for m in PushReason]


# ------------------------------------------------------------ the daemon


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names lower-cased
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def _headers(raw: Headers) -> dict[str, str]:
    return {name.decode().lower(): values[-1].decode("latin-1")
            for name, values in raw.getAllRawHeaders()}


async def http(stack: Stack, method: str, path: str, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> Answer:
    status, raw, data = await request(method, stack.url + path, body, headers)
    return Answer(status, _headers(raw), data)


def _raw_exchanges(port: int, heads: list[bytes], wait: float) -> list[Answer]:
    """Sends each head on its own connection (all at once), reads each answer to EOF.

    Blocking: runs in a thread, while the daemon answers in the reactor's."""
    socks = []
    for head in heads:
        sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
        sock.sendall(head)
        socks.append(sock)
    answers = []
    deadline = time.monotonic() + wait
    for sock in socks:
        data = b""
        with sock:
            while True:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), data[:200]
        fields = dict(line.split(": ", 1) for line in lines[1:])
        answers.append(Answer(int(lines[0].split()[1]),
                              {k.lower(): v for k, v in fields.items()}, body))
    return answers


async def raw(stack: Stack, heads: list[bytes], wait: float = 10.0) -> list[Answer]:
    return await deferToThread(_raw_exchanges, stack.port, heads, wait)


def concrete(path: str) -> str:
    """A request path for a documented one (``{userId}`` filled in)."""
    return path.replace("{userId}", "u1")


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


class Checker:
    """Checks answers against the document and records what was seen."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, path: str, method: str, answer: Answer) -> Answer:
        where = f"{method} {path} -> {answer.status}"
        op = DOC["paths"][path][method.lower()]
        status = str(answer.status)
        assert status in op["responses"], f"{where}: status not declared; {answer.body[:300]!r}"
        declared = resolve(op["responses"][status])
        for name, header in declared.get("headers", {}).items():
            header = resolve(header)
            value = answer.headers.get(name.lower())
            if header.get("required"):
                assert value is not None, f"{where}: header {name} missing"
            if value is not None:
                schema = header["schema"]
                parsed: Any = int(value) if schema.get("type") == "integer" else value
                assert errors(schema, parsed) == [], (where, name, value)
        if method != "HEAD":  # a HEAD answer's body is not sent (or not read)
            content = declared.get("content", {})
            if content:
                media = {_media(m): c for m, c in content.items()}
                got = _media(answer.headers.get("content-type", ""))
                assert got in media, f"{where}: content-type {got} not in {list(media)}"
                value = (answer.json() if got == "application/json"
                         else answer.body.decode("utf-8"))
                problems = errors(media[got]["schema"], value)
                assert problems == [], f"{where}: {problems}; {answer.body[:300]!r}"
            else:
                assert answer.body == b"", where
        self.seen.add((path, method.lower(), status))
        return answer

    def not_found(self, answer: Answer) -> None:
        assert answer.status == 404
        schema = resolve(DOC["components"]["responses"]["NotFound"])[
            "content"]["application/json"]["schema"]
        assert errors(schema, answer.json()) == []


async def poll(stack: Stack, path: str, want: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (await http(stack, "GET", path)).status != want:
        assert time.monotonic() < deadline, f"GET {path} never answered {want}"
        await sleep(0.05)


async def open_access_requests(stack: Stack, check: Checker,
                               register_ws: Callable[[], object]) -> None:
    """No token: everything but 401. ``register_ws`` registers a WebSocket server."""
    # Before any connection (websocket) server is known.
    for path in ("/", "/ws", "/health"):
        for method in ("GET", "HEAD"):
            assert check.check(path, method, await http(stack, method, path)).status == 503

    node = await stack.node()
    node.add_user("u1")
    node.add_user("slow1", behaviour="silent")
    node.add_user("slow2", behaviour="silent")
    register_ws()
    await poll(stack, "/", 200)
    await poll(stack, "/ws", 200)
    await poll(stack, "/health", 200)
    for path in ("/", "/ws", "/health", "/index.html", "/openapi.json", "/metrics"):
        for method in ("GET", "HEAD"):
            assert check.check(path, method, await http(stack, method, path)).status == 200
    served = (await http(stack, "GET", "/openapi.json")).json()
    assert served == json.loads(json.dumps(DOC))

    # Every method a path does not accept.
    for path, method, op in operations():
        if "405" in op["responses"]:
            answer = check.check(path, method.upper(),
                                 await http(stack, method.upper(), concrete(path)))
            assert answer.status == 405
            if method != "head":
                assert answer.json()["allow"] == answer.headers["allow"].split(", ")

    for path in ("/nope", "/push/x", "//", "/health/"):
        check.not_found(await http(stack, "GET", path))

    async def push(body: bytes, **headers: str) -> Answer:
        return check.check("/push", "POST", await http(
            stack, "POST", "/push", body, {"Content-Type": "application/json", **headers}))

    answer = await push(b'{"userId": "u1", "content": "hi"}')
    assert answer.status == 200 and answer.json()["summary"]["success"] == 1
    answer = await push(b"{not json")
    assert answer.status == 400 and answer.json()["field"] == "body"
    answer = await push(b'{"userId": "u1", "content": "hi"}', Origin="http://evil.example")
    assert answer.status == 403
    answer = await push(b"--x\r\n", **{"Content-Type": "multipart/form-data; boundary=x"})
    assert answer.status == 415 and answer.json()["field"] == "body"
    answer = await push(json.dumps({"userId": "u1", "content": "x" * 20000}).encode())
    assert answer.status == 413 and answer.json()["field"] == "content"
    answer = await push(json.dumps({"userIds": ["a", "b", "c"], "content": "x"}).encode())
    assert answer.status == 413 and answer.json()["field"] == "userIds"
    assert answer.json()["limit"] == 2
    answer = await push(b"x" * (MAX_REQUEST_SIZE + 1))
    assert answer.status == 413 and answer.json()["limit"] == MAX_REQUEST_SIZE

    # Two silent users fill mp.alloc.max-inflight-pushes (2): the next push is 503.
    before = node.received_total
    pending = ensureDeferred(push(json.dumps(
        {"userIds": ["slow1", "slow2"], "content": "x", "timeout": 1000}).encode()))
    await until(lambda: node.received_total == before + 2, what="the slow pushes")
    answer = await push(b'{"userId": "u1", "content": "hi"}')
    assert answer.status == 503 and answer.json()["limit"] == 2
    answer = await pending
    assert answer.status == 200 and answer.json()["summary"]["timeout"] == 2

    # Connection-level answers, on every path and method: a body too large
    # by its Content-Length, and a head not complete in time.
    every = [(path, method.upper()) for path, method, _ in operations()]
    heads = [f"{method} {concrete(path)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             f"Content-Length: {MAX_REQUEST_SIZE + 1}\r\n\r\n".encode()
             for path, method in every]
    for (path, method), answer in zip(every, await raw(stack, heads), strict=True):
        assert check.check(path, method, answer).status == 413, (path, method)
    heads = [f"{method} {concrete(path)} HTTP/1.1\r\nHost: 127.0".encode()
             for path, method in every]
    started = time.monotonic()
    for (path, method), answer in zip(every, await raw(stack, heads), strict=True):
        assert check.check(path, method, answer).status == 408, (path, method)
    assert time.monotonic() - started < 5.0
    # Not HTTP/1.1 framing, a request line and a header line too long.
    refusals = {
        400: "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
             "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        414: "{method} {path}?q=" + "a" * LINE_LIMIT + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        431: "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + "a" * LINE_LIMIT
             + "\r\n\r\n",
    }
    for status, template in refusals.items():
        heads = [template.format(method=method, path=concrete(path)).encode()
                 for path, method in every]
        for (path, method), answer in zip(every, await raw(stack, heads), strict=True):
            assert check.check(path, method, answer).status == status, (path, method)


async def operator_requests(stack: Stack, check: Checker, redis: RedisServer) -> None:
    """/cluster, /config and /users/{userId} without a token (u1 is routed): all but 401."""
    foreign = {"Origin": "http://evil.example"}
    for method in ("GET", "HEAD"):
        for path in ("/cluster", "/config"):
            assert check.check(path, method, await http(stack, method, path)).status == 200
            answer = check.check(path, method, await http(stack, method, path, headers=foreign))
            assert answer.status == 403
        for path, status in (("/users/u1", 200), ("/users/nobody", 404), ("/users/%20", 400)):
            assert check.check(USERS, method, await http(stack, method, path)).status == status
        answer = check.check(USERS, method, await http(stack, method, "/users/u1",
                                                        headers=foreign))
        assert answer.status == 403
    redis.stop()
    for method in ("GET", "HEAD"):
        assert check.check(USERS, method, await http(stack, method, "/users/u1")).status == 503


async def token_requests(stack: Stack, check: Checker) -> None:
    node = await stack.node()
    node.add_user("u1")
    body = b'{"userId": "u1", "content": "hi"}'
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        answer = check.check("/push", "POST", await http(
            stack, "POST", "/push", body, {"Content-Type": "application/json", **headers}))
        assert answer.status == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
    answer = check.check("/push", "POST", await http(
        stack, "POST", "/push", body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}))
    assert answer.status == 200 and answer.json()["summary"]["success"] == 1
    for path, documented in (("/cluster", "/cluster"), ("/users/u1", USERS),
                             ("/config", "/config")):
        for method in ("GET", "HEAD"):
            answer = check.check(documented, method, await http(stack, method, path))
            assert answer.status == 401
            assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_real_answers_match_the_document_and_cover_it(
        tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
        redis_server: RedisServer, fresh_redis_server: RedisServer,
        make_registrar: Callable[..., NodeRegistrar]) -> None:
    check = Checker()

    def register_ws() -> None:
        registrar = make_registrar(zk_server.connect_string, namespace=zk_namespace + "-open")
        registrar.register("ws", "127.0.0.1", 8080)

    limits = ("request-head-timeout = 1s\n    max-users-per-push = 2\n"
              "    max-inflight-pushes = 2")
    # Its own Redis: the operator requests end by stopping it.
    async with running_stack(tmp_path / "open", zk_server.connect_string,
                             zk_namespace + "-open", fresh_redis_server.port,
                             alloc_extra=limits) as stack:
        await open_access_requests(stack, check, register_ws)
        await operator_requests(stack, check, fresh_redis_server)
    async with running_stack(tmp_path / "token", zk_server.connect_string,
                             zk_namespace + "-token", redis_server.port,
                             alloc_extra=f'push-token = "{TOKEN}"') as stack:
        await token_requests(stack, check)

    declared = {(path, method, status) for path, method, op in operations()
                for status in op["responses"]}
    never = declared - check.seen - {("/push", "post", "500")}
    assert never == set(), f"declared but never produced: {sorted(never)}"
    assert check.seen <= declared
