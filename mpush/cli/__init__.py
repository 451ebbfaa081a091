"""``mpush-push``: the operator's shell command, a client of the HTTP API.

It talks to a running daemon (local or remote) over HTTP only, with the
standard library, so it starts fast and imports nothing of the daemon but
the pure core.
"""
