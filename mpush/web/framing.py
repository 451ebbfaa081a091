"""The HTTP/1.1 channel's refusals: ambiguous framing, over-long heads, malformed requests.

twisted.web, left alone, reads ``Transfer-Encoding: chunked`` followed by
``Transfer-Encoding: identity`` as chunked and a ``Content-Length`` next to
``Transfer-Encoding: identity`` as the length (a request a proxy may frame
the other way: smuggling), drops a request line or header line over 16 KiB
without a word, and answers other malformed requests with a bare ``400``.
:class:`StrictChannel` answers each with a JSON error (the same
``{"error", "status"}`` body as every endpoint's) and closes the
connection, since what follows cannot be read as a request:

* ``400``: a ``Transfer-Encoding`` other than ``chunked`` alone, or one
  with a ``Content-Length`` (RFC 9112 6.3: the length cannot be determined
  reliably), and any other malformed request line, header or chunk;
* ``414``: a request line over ``MAX_LENGTH`` (16 KiB);
* ``431``: a header line over ``MAX_LENGTH``, or a head over
  ``totalHeadersSize`` (16 KiB) in all.
"""

from __future__ import annotations

from twisted.web.http import HTTPChannel

from mpush.web.raw_answers import raw_error

__all__ = ["StrictChannel"]

_FRAMING = ("the body's length is ambiguous: Transfer-Encoding must be chunked alone,"
            " without Content-Length, and Content-Length one number (RFC 9112)")
_MALFORMED = "malformed request: not valid HTTP/1.1"


class StrictChannel(HTTPChannel):
    """An HTTPChannel that refuses what is not plain HTTP/1.1 framing, in JSON."""

    _bad_request = _MALFORMED  # why the next bare 400 twisted.web asks for is given

    def refuse(self, status: int, message: str, **extra: object) -> None:
        """Answer ``status`` with a JSON error now and close: no request on this
        connection is served any more (the one being read, if any, never will be)."""
        self.close_refused(raw_error(status, message, **extra))

    def close_refused(self, answer: bytes | None) -> None:
        """Write ``answer`` (if any) and close; abort if the client does not let go."""
        if self.requests:
            # Its head may be complete: twisted.web would still hand it to the
            # Site once the (empty) body is in. LimitedRequest checks this.
            self.requests[-1].refused = True
        if answer is not None:
            self.transport.write(answer)
        # As twisted.web's idle timeout does: a client that reads nothing
        # more would hold the closing connection for ever.
        if self.abortTimeout is not None and self._abortingCall is None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()  # reads no more; what was written goes out first

    def request_target(self) -> tuple[bytes, bytes]:
        """The method and target (path and query) of the request whose head is in."""
        return self._command, self._path

    def skip_body(self) -> None:
        """Have the request whose head is in served now, as if it had no body, and
        close after: its body, unread, cannot be told from a next request."""
        self.length = 0  # twisted.web then hands the request over at once
        self._transferDecoder = None
        self.persistent = False

    def allHeadersReceived(self) -> None:
        encodings = self.requests[-1].requestHeaders.getRawHeaders(b"transfer-encoding")
        # twisted.web refuses the other cases itself (another coding, chunked
        # twice, chunked with Content-Length), but lets "identity" through.
        if encodings is not None and (len(encodings) != 1
                                      or encodings[0].lower() != b"chunked"):
            self.refuse(400, _FRAMING)
            return
        HTTPChannel.allHeadersReceived(self)

    def _failChooseTransferDecoder(self) -> bool:
        # Called by twisted.web for a bad Content-Length or Transfer-Encoding
        # header only, just before its bare 400: say which.
        self._bad_request = _FRAMING
        return HTTPChannel._failChooseTransferDecoder(self)  # type: ignore[no-any-return]

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._receivedHeaderSize > self.totalHeadersSize:
            self.refuse(431, f"request head over {self.totalHeadersSize} bytes in all",
                        limit=self.totalHeadersSize)
        else:
            self.refuse(400, self._bad_request)

    def lineLengthExceeded(self, line: bytes) -> None:
        # A request exists from its request line on, until it is answered.
        if self.requests:
            self.refuse(431, f"a header line over {self.MAX_LENGTH} bytes",
                        limit=self.MAX_LENGTH)
        else:
            self.refuse(414, f"request line over {self.MAX_LENGTH} bytes",
                        limit=self.MAX_LENGTH)
