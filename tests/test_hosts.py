"""mpush.hosts: which host texts from ZooKeeper may be served (GET /) or connected to."""

from __future__ import annotations

import pytest

from mpush.hosts import MAX_HOST_NAME, host_problem

SERVABLE = ["10.0.0.5", "203.0.113.9", "255.255.255.255", "localhost", "cs-1.example.com",
            "1.example", "x" * 63 + ".example", ".".join(["a" * 63] * 3 + ["a" * 61])]


@pytest.mark.parametrize("host", SERVABLE)
def test_ipv4_addresses_and_host_names_are_servable(host: str) -> None:
    assert len(host) <= MAX_HOST_NAME
    assert host_problem(host) is None
    assert host_problem(host, ipv6=True) is None


# The forms the issue found in node data (comma, CR LF, NUL, ...) are tested
# through ServerNode.parse in test_zk.py; here, the rest of the rule.
REFUSED = [
    ("254-characters", ".".join(["a" * 63] * 3 + ["a" * 62]), "254 characters long"),
    ("host-and-port", "10.0.0.5:3000", "it holds ':'"),
    ("bracketed-ipv6", "[2001:db8::1]", "it holds '['"),
    ("ipv4-out-of-range", "999.1.1.1", "numeric, but not a valid IPv4 address"),
    ("ipv4-three-parts", "10.0.0", "numeric, but not a valid IPv4 address"),
    ("empty-label", "cs..example", "a label is empty"),
    ("trailing-dot", "cs.example.", "a label is empty"),
    ("hyphen-first", "-cs.example", "starts or ends with '-'"),
    ("64-character-label", "x" * 64 + ".example", "longer than 63 characters"),
    ("empty", "", "a label is empty"),
]


@pytest.mark.parametrize(("host", "fragment"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_anything_else_is_refused_saying_why(host: str, fragment: str) -> None:
    problem = host_problem(host)
    assert problem is not None and fragment in problem, problem
    assert host_problem(host, ipv6=True) == problem  # not IPv6 either


@pytest.mark.parametrize("host", ["fe80::1", "2001:db8::1", "::1", "::ffff:10.0.0.5"])
def test_ipv6_is_refused_as_ipv6_unless_allowed(host: str) -> None:
    # The client SDK splits each entry on ':', so GET / cannot carry one;
    # a gateway connection can.
    assert host_problem(host) == ("an IPv6 address, which the client SDK cannot parse"
                                  " (it splits each entry of GET / on ':')")
    assert host_problem(host, ipv6=True) is None

