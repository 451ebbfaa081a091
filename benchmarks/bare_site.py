"""The baseline for benchmarks/alloc_http.py: a bare twisted.web Site that
answers every request with one fixed body. Usage: bare_site.py PORT BODY."""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site


class Fixed(Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_GET(self, request: object) -> bytes:
        return self.body


def main() -> None:
    port, body = int(sys.argv[1]), sys.argv[2].encode()
    reactor.listenTCP(port, Site(Fixed(body)), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
