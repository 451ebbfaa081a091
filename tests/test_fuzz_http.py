"""Fuzz: the live daemon against its own OpenAPI document, with schemathesis.

The real daemon (``twistd -n mpush-alloc`` as a child process: no reactor in
the test process), real ZooKeeper and Redis, one fake mpush node (a child
process too) registered as connection and gateway server with online users,
so ``GET /`` answers 200 and pushes reach a gateway. The schema is loaded
from the daemon's own ``/openapi.json``; schemathesis generates requests for
every operation of it (every path, every method: the accepted ones and the
405 ones), positive (matching the schema) and negative (breaking it), and
each answer is checked twice:

* by schemathesis' response checks: no 5xx, a status the document declares
  for that operation, its declared content type, headers and body schema,
  and schema-breaking input rejected with a 4xx;
* by our own reading of the document: the status is declared for that
  path and method.

Then the daemon must still serve (``GET /`` 200, ``/health`` 200, a push
delivered), be alive, and have logged no traceback. Bounded: a fixed number
of examples per operation (derandomized: the same requests on every run, no
example database), a timeout on every request, loopback only. The counts per
operation and the statuses seen are printed (``-s`` not needed).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mpush.web.openapi import build_document
from tests.harness.daemon import Daemon, free_port, write_config
from tests.harness.fakenode import FakeNodeProcess
from tests.harness.redis import RedisServer
from tests.harness.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: Examples per operation (half positive, half negative where the operation
#: has input to break). ``POST /push`` is where the input is: it gets most.
PUSH_EXAMPLES = int(os.environ.get("FUZZ_PUSH_EXAMPLES", "1200"))
OTHER_EXAMPLES = int(os.environ.get("FUZZ_OTHER_EXAMPLES", "30"))
MIN_REQUESTS = 2000
REQUEST_TIMEOUT = 10.0
USERS = 20

#: schemathesis' checks that judge one answer against the document (not the
#: stateful ones, nor ``positive_data_acceptance``: a schema-valid push body
#: may still lack a target or a content, which the schema cannot say).
CHECKS: list[CheckFunction] = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance, negative_data_rejection,
]


_USER_IDS = st.sampled_from([f"u{i}" for i in range(USERS)] + ["nobody", "u0 ", "é"])
_CONTENTS = st.one_of(st.text(min_size=1, max_size=40),
                      st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8),
                                      min_size=1, max_size=3))
#: A target and a content, with the odd extra: what makes a push run.
push_targets: st.SearchStrategy[dict[str, object]] = st.tuples(
    st.one_of(st.fixed_dictionaries({"userId": _USER_IDS}),
              st.fixed_dictionaries({"userIds": st.lists(_USER_IDS, min_size=1, max_size=5)}),
              st.fixed_dictionaries({"broadcast": st.just(True)})),
    st.one_of(st.fixed_dictionaries({"content": _CONTENTS}),
              st.fixed_dictionaries({"hello": st.text(min_size=1, max_size=40)},
                                    optional={"msgType": st.sampled_from([1, 2, 3])})),
    st.fixed_dictionaries({}, optional={
        "ackModel": st.sampled_from(["none", "auto", "biz"]),
        "timeout": st.integers(1000, 5000),
        "tags": st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3),
        "taskId": st.text(max_size=8),
        "condition": st.sampled_from(["", "  ", "tags.indexOf('x') >= 0"]),
    }),
).map(lambda parts: {k: v for part in parts for k, v in part.items()})


def _with_target(pair: tuple[Case, dict[str, object]]) -> Case:
    case, target = pair
    body = case.body if isinstance(case.body, dict) else {}
    # The generated fields that could clash with the target go.
    clash = {"userId", "userIds", "broadcast", "content", "hello", "msgType", "taskId"}
    case.body = {**{k: v for k, v in body.items() if k not in clash}, **target}
    return case


class Tally:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()

    def add(self, operation: str, status: int) -> None:
        self.sent[operation] += 1
        self.statuses[f"{operation} {status}"] += 1
        self.by_status[status] += 1

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def report(self, seconds: float) -> str:
        lines = [f"HTTP fuzz: {self.total} requests in {seconds:.1f} s"]
        for operation, n in sorted(self.sent.items()):
            seen = {k.rsplit(" ", 1)[1]: v for k, v in self.statuses.items()
                    if k.rsplit(" ", 1)[0] == operation}
            lines.append(f"  {operation:<22} {n:>5}  {dict(sorted(seen.items()))}")
        lines.append(f"  statuses: {dict(sorted(self.by_status.items()))}")
        return "\n".join(lines)


@pytest.fixture
def live(tmp_path: Path, zk_server: ZooKeeperServer, zk_namespace: str,
         redis_server: RedisServer) -> Iterator[tuple[Daemon, FakeNodeProcess]]:
    node = FakeNodeProcess(zk_server.connect_string, redis_server.address,
                           namespace=zk_namespace, users=USERS, user_prefix="u",
                           args=["--ws-port", "8080"])
    port = free_port()
    config = write_config(tmp_path / "mpush.conf", port=port, zk=zk_server.connect_string,
                          namespace=zk_namespace,
                          redis_nodes=[f"127.0.0.1:{redis_server.port}"])
    daemon = Daemon(tmp_path, config, port=port)
    with node:
        try:
            daemon.start()
            daemon.wait_for_body(lambda body: b":" in body, wait=20)
            daemon.wait_for_body(lambda body: b":8080" in body, wait=20, path="/ws")
            _wait_push_ready(daemon)
            yield daemon, node
        finally:
            daemon.kill()


def _push(daemon: Daemon, body: object) -> requests.Response:
    return requests.post(daemon.url + "/push", json=body, timeout=REQUEST_TIMEOUT)


def _wait_push_ready(daemon: Daemon, wait: float = 20.0) -> None:
    """Until a push to a known user is delivered (the gateway connection is up)."""
    deadline = time.monotonic() + wait
    while True:
        answer = _push(daemon, {"userId": "u0", "content": "ready?"})
        if answer.status_code == 200 and answer.json()["summary"]["success"] == 1:
            return
        assert time.monotonic() < deadline, f"pushes never delivered: {answer.text}"
        time.sleep(0.1)


def test_live_daemon_answers_only_what_the_document_declares(
        live: tuple[Daemon, FakeNodeProcess], capsys: pytest.CaptureFixture[str]) -> None:
    daemon, _node = live
    served = requests.get(daemon.url + "/openapi.json", timeout=REQUEST_TIMEOUT).json()
    assert served == json.loads(json.dumps(build_document()))
    # from_dict, not from_url: from_url leaves out the operation that served it.
    schema = schemathesis.openapi.from_dict(served)
    declared = {(path, method.upper()): set(op["responses"])
                for path, item in served["paths"].items() for method, op in item.items()}
    assert len(declared) == 80  # 10 paths x 8 methods

    tally = Tally()
    session = requests.Session()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.path, op.method.upper()) for op in operations} == set(declared)

    for op in operations:
        name = f"{op.method.upper()} {op.path}"
        examples = PUSH_EXAMPLES if name == "POST /push" else OTHER_EXAMPLES
        fuzz = _fuzzer(op, name, examples, daemon.url, session, declared, tally)
        fuzz()
        # A small space (nothing to generate) ends early: repeat it up to the count.
        while tally.sent[name] < min(examples, OTHER_EXAMPLES):
            fuzz()

    elapsed = time.monotonic() - started
    with capsys.disabled():
        print("\n" + tally.report(elapsed))
    assert tally.total >= MIN_REQUESTS, tally.report(elapsed)
    assert set(tally.sent) == {f"{m} {p}" for p, m in declared}
    assert not [s for s in tally.by_status if s >= 500], tally.report(elapsed)

    # Still serving, and nothing unhandled on the way.
    assert daemon.process is not None and daemon.process.poll() is None
    assert daemon.get("/")[0] == 200
    assert daemon.get("/health")[0] == 200
    answer = _push(daemon, {"userId": "u1", "content": "still there?"})
    assert answer.status_code == 200 and answer.json()["summary"]["success"] == 1
    log = daemon.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]



def _fuzzer(op: APIOperation, name: str, examples: int, base_url: str,
            session: requests.Session, declared: dict[tuple[str, str], set[str]],
            tally: Tally) -> Callable[[], None]:
    """A hypothesis test sending ``examples`` generated requests to one operation."""
    strategy = op.as_strategy(GenerationMode.POSITIVE)
    if op.body or op.query or op.headers:
        strategy = st.one_of(strategy, op.as_strategy(GenerationMode.NEGATIVE))
    if name == "POST /push":
        # Most schema-valid bodies name no target or no content (the schema
        # cannot require "one of"): also send them with one, so pushes run.
        strategy = st.one_of(strategy, st.tuples(
            op.as_strategy(GenerationMode.POSITIVE), push_targets).map(_with_target))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def fuzz(case: Case) -> None:
        response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT)
        tally.add(name, response.status_code)
        status = str(response.status_code)
        assert status in declared[(case.operation.path, case.method.upper())], (
            f"{name}: {status} not declared; {response.content[:300]!r}\n"
            f"{case.as_curl_command()}")
        case.validate_response(response, checks=CHECKS)

    return fuzz
