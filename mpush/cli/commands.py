"""What each ``mpush-push`` command asks the daemon and how it shows the answer."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from mpush.cli.api import ApiClient
from mpush.cli.cluster_view import cluster_blocks
from mpush.cli.tables import Painter, table, text
from mpush.outcomes import PushOutcome

__all__ = ["COMMANDS", "Output", "UsageError", "build_push"]

#: Largest file ``--content @file`` reads (the daemon's own default body limit).
MAX_CONTENT_FILE: Final = 64 * 1024
CLIENT_TYPES: Final = {1: "mobile", 2: "pc", 3: "web", -1: "other"}
#: The summary's words, as the page says them.
SUMMARY_WORDS: Final = {PushOutcome.SUCCESS: "delivered", PushOutcome.OFFLINE: "offline",
                        PushOutcome.FAILURE: "failed", PushOutcome.TIMEOUT: "timed out"}
RESULT_COLOURS: Final = {PushOutcome.SUCCESS: "green", PushOutcome.OFFLINE: "yellow",
                         PushOutcome.FAILURE: "red", PushOutcome.TIMEOUT: "red"}


class UsageError(Exception):
    """A command line that cannot make a request; the message says what to change."""


@dataclass
class Output:
    stream: TextIO
    as_json: bool = False
    paint: Painter = field(init=False)

    def __post_init__(self) -> None:
        self.paint = Painter(self.stream)

    def json(self, document: Any) -> None:
        print(json.dumps(document, indent=2, ensure_ascii=False), file=self.stream)

    def line(self, text: str = "") -> None:
        print(text, file=self.stream)



# -- send ----------------------------------------------------------------------


def content_of(argument: str) -> Any:
    """``--content``: the text itself, or ``@path``'s text (a JSON object sent as one)."""
    if not argument.startswith("@"):
        return argument
    path = Path(argument[1:])
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONTENT_FILE + 1)
    except OSError as error:
        raise UsageError(f"cannot read --content file {path}: {error.strerror}") from None
    if len(raw) > MAX_CONTENT_FILE:
        raise UsageError(f"--content file {path} is over {MAX_CONTENT_FILE} bytes")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--content file {path} is not UTF-8 text") from None
    try:
        document = json.loads(value)
    except ValueError:
        return value
    return document if isinstance(document, dict) else value


def build_push(args: argparse.Namespace) -> dict[str, Any]:
    """The ``/push`` body of ``send``'s arguments."""
    if not args.user and not args.broadcast:
        raise UsageError("say who to push to: --user ID (repeatable) or --broadcast")
    if (args.tag or args.condition or args.task_id) and not args.broadcast:
        raise UsageError("--tag, --condition and --task-id go with --broadcast")
    body: dict[str, Any] = {"broadcast": True} if args.broadcast else {"userIds": args.user}
    if args.hello is not None:
        body["hello"] = args.hello
    else:
        body["content"] = content_of(args.content)
    optional = {"tags": args.tag or None, "condition": args.condition, "taskId": args.task_id,
                "ackModel": args.ack, "timeout": args.timeout}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def summary_line(results: list[dict[str, Any]]) -> str:
    """"2 delivered, 1 offline (no_route)": the counts, and why where not delivered."""
    parts = []
    for outcome, word in SUMMARY_WORDS.items():
        rows = [r for r in results if r.get("result") == outcome]
        if rows:
            reasons = Counter(str(r["reason"]) for r in rows if r.get("reason"))
            why = ", ".join(reason for reason, _ in reasons.most_common())
            parts.append(f"{len(rows)} {word}" + (f" ({why})" if why else ""))
    return ", ".join(parts) or "no result"


def send(client: ApiClient, body: dict[str, Any], out: Output) -> int:
    document = client.post("/push", body).document
    results = document.get("results", []) if isinstance(document, dict) else []
    if out.as_json:
        out.json(document)
    else:
        rows = [[text(r.get("userId") if r.get("userId") is not None else "(broadcast)"),
                 CLIENT_TYPES.get(r.get("clientType"), text(r.get("clientType"))),
                 text(r.get("result")), reason_cell(r), text(r.get("gateway")),
                 text(r.get("ms"))] for r in results]
        colours = [RESULT_COLOURS.get(r.get("result")) for r in results]
        out.line(table(["USER", "CLIENT", "RESULT", "REASON", "GATEWAY", "MS"], rows,
                       paint=out.paint, column=2, colours=colours))
        out.line(summary_line(results))
    ok = bool(results) and all(r.get("result") == PushOutcome.SUCCESS for r in results)
    return 0 if ok else 1


def reason_cell(result: dict[str, Any]) -> str:
    reason, code = result.get("reason"), result.get("code")
    if reason is None:
        return "-"
    return f"{reason} ({code})" if code is not None else str(reason)


# -- route, cluster, health ---------------------------------------------------


def route(client: ApiClient, user: str, out: Output) -> int:
    answer = client.get("/users/" + urllib.parse.quote(user, safe=""), accept=(404,))
    if out.as_json:
        out.json(answer.document)
    if answer.status == 404:
        if not out.as_json:
            out.line(f"no routes for {user}: the user is not connected to any server")
        return 1
    if not out.as_json:
        out.line(routes_table(answer.document, out))
    return 0


def routes_table(document: dict[str, Any], out: Output) -> str:
    rows, colours = [], []
    for r in document.get("routes", []):
        problem = r.get("malformed")  # {"reason", "value"} of an unusable entry
        online = "malformed" if problem else text(r.get("online"))
        servers = ",".join(r.get("connectionServers") or []) or None
        rows.append([CLIENT_TYPES.get(r.get("clientType"), text(r.get("clientType"))), online,
                     text(servers), text(r.get("gateway")),
                     text(r.get("osName")), text(r.get("clientVersion")),
                     f"field {r.get('field')}: {problem.get('reason')}" if problem else ""])
        colours.append("red" if problem else ("green" if r.get("online") else "yellow"))
    return table(["CLIENT", "ONLINE", "CONNECTION SERVER", "GATEWAY", "OS", "VERSION", ""],
                 rows, paint=out.paint, column=1, colours=colours)


def cluster(client: ApiClient, _: None, out: Output) -> int:
    """Exit 0 while ``GET /`` has servers to hand out, else 1.

    ``--json`` prints ``/cluster`` as it is; the text also says what only
    ``/health`` knows (the gateways' transport, handout sharing).
    """
    document = client.get("/cluster").document
    if out.as_json:
        out.json(document)
    else:
        health = client.get("/health", accept=(503,)).document
        blocks = cluster_blocks(document, health if isinstance(health, dict) else {}, out.paint)
        out.line("\n\n".join(blocks))
    return 0 if document.get("serving") else 1


def health(client: ApiClient, _: None, out: Output) -> int:
    answer = client.get("/health", accept=(503,))
    document = answer.document if isinstance(answer.document, dict) else {}
    if out.as_json:
        out.json(answer.document)
    else:
        status = text(document.get("status"))
        colour = {"ok": "green", "degraded": "yellow"}.get(status, "red")
        out.line(out.paint(status, colour))
        for reason in document.get("reasons", []):
            out.line(f"  {reason}")
    return 0 if document.get("status") == "ok" else 1


COMMANDS: Final[dict[str, Callable[[ApiClient, Any, Output], int]]] = {
    "send": send, "route": route, "cluster": cluster, "health": health}
