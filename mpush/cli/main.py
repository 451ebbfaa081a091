"""``mpush-push``: send a push, look up a user, see the cluster, from a shell.

Exit status: 0 when every target succeeded (or the cluster is healthy),
1 when any did not, 2 on a usage, connection or HTTP error, with one line
on stderr saying what to do.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Final

from mpush.cli.api import ApiClient, ApiError
from mpush.cli.commands import COMMANDS, Output, UsageError, build_push
from mpush.config.units import parse_duration

__all__ = ["main", "run"]

DEFAULT_URL: Final = "http://127.0.0.1:9999"
#: How long a request other than a push may take.
REQUEST_TIMEOUT: Final = 10.0
#: Added to the push's own wait: the daemon answers once the gateways have.
PUSH_MARGIN: Final = 10.0
#: The longest a push waits by default (a broadcast: mp.alloc.broadcast-timeout).
DEFAULT_PUSH_WAIT: Final = 30.0


def milliseconds(text: str) -> int:
    """``--timeout``: "5s", "1500ms" or a bare number of milliseconds, as in the config."""
    try:
        return round(parse_duration(text) * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 5s or 1500ms)") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="mpush-push", description="Push and look around an mpush cluster through mpush-alloc.")
    top.add_argument("--url", default=os.environ.get("MPUSH_URL", DEFAULT_URL),
                     help=f"the daemon's address (MPUSH_URL; default {DEFAULT_URL})")
    top.add_argument("--token", default=os.environ.get("MPUSH_TOKEN"),
                     help="the push token, when the daemon has one (MPUSH_TOKEN; never printed)")
    top.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = sub.add_parser("send", help="push to users, or broadcast")
    send.add_argument("--user", action="append", default=[], metavar="ID",
                      help="a user to push to (repeat for several)")
    text = send.add_mutually_exclusive_group(required=True)
    text.add_argument("--hello", metavar="TEXT", help="a notification, as the Java alloc sends")
    text.add_argument("--content", metavar="TEXT|@FILE",
                      help="raw content; @file.json sends the file (a JSON object as is)")
    send.add_argument("--broadcast", action="store_true", help="push to every connected user")
    send.add_argument("--tag", action="append", default=[], help="broadcast: users with this tag")
    send.add_argument("--condition", metavar="EXPR", help="broadcast: a condition script")
    send.add_argument("--task-id", metavar="ID", help="broadcast: the task id")
    send.add_argument("--ack", choices=("none", "auto", "biz"), help="delivery ack asked")
    send.add_argument("--timeout", type=milliseconds, metavar="DURATION",
                      help="how long to wait for the gateways, e.g. 5s")

    route = sub.add_parser("route", help="a user's routes, per client type")
    route.add_argument("user", metavar="USER_ID")
    sub.add_parser("cluster", help="connection and WebSocket servers, gateways, ZooKeeper, Redis")
    sub.add_parser("health", help="the daemon's health")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Output(sys.stdout, as_json=args.json)
    timeout = REQUEST_TIMEOUT
    try:
        if args.command == "send":
            body = build_push(args)
            wait = (args.timeout / 1000) if args.timeout else DEFAULT_PUSH_WAIT
            timeout = wait + PUSH_MARGIN
            client = ApiClient(args.url, args.token, timeout)
            return COMMANDS["send"](client, body, out)
        client = ApiClient(args.url, args.token, timeout)
        return COMMANDS[args.command](client, getattr(args, "user", None), out)
    except (ApiError, UsageError) as error:
        print(f"mpush-push: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 2


def run() -> None:
    """The console script: exit with main's status."""
    sys.exit(main())


if __name__ == "__main__":  # python -m mpush.cli.main
    run()
