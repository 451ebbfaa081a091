"""Unit tests of the ordered parent service (no reactor: Deferreds fired by hand)."""

from __future__ import annotations

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed

from mpush.services.ordered import OrderedService, StartError


class Recorder(Service):
    """A child that records its calls and can start/stop asynchronously."""

    def __init__(self, name: str, events: list[str], *, manual: bool = False,
                 broken: bool = False) -> None:
        self.setName(name)
        self.events = events
        self.manual = manual
        self.broken = broken
        self.pending: Deferred[None] | None = None

    def privilegedStartService(self) -> None:
        self.events.append(f"privileged {self.name}")

    def startService(self) -> Deferred[None]:
        self.events.append(f"start {self.name}")
        if self.broken:
            return fail(RuntimeError(f"{self.name} is broken"))
        Service.startService(self)
        if self.manual:
            self.pending = Deferred()
            return self.pending
        return succeed(None)

    def stopService(self) -> Deferred[None]:
        self.events.append(f"stop {self.name}")
        Service.stopService(self)
        return succeed(None)


def make(events: list[str], *children: Recorder) -> OrderedService:
    parent = OrderedService()
    for child in children:
        child.setServiceParent(parent)
    return parent


def test_children_start_in_order_each_awaited() -> None:
    events: list[str] = []
    a = Recorder("a", events, manual=True)
    b = Recorder("b", events)
    parent = make(events, a, b)
    d = parent.startService()
    assert events == ["start a"], "b must wait until a's start Deferred fires"
    assert not d.called
    assert a.pending is not None
    a.pending.callback(None)
    assert events == ["start a", "start b"]
    assert d.called and parent.running


def test_stop_in_reverse_order() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events), Recorder("b", events), Recorder("c", events))
    parent.startService()
    events.clear()
    d = parent.stopService()
    assert d.called
    assert events == ["stop c", "stop b", "stop a"]
    assert not parent.running


def test_failed_start_stops_what_started_and_reports() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events), Recorder("b", events),
                  Recorder("c", events, broken=True), Recorder("d", events))
    d = parent.startService()
    failures: list[Exception] = []
    d.addErrback(lambda f: failures.append(f.value))
    assert events == ["start a", "start b", "start c", "stop b", "stop a"]
    assert len(failures) == 1
    assert isinstance(failures[0], StartError)
    assert "c failed to start: c is broken" in str(failures[0])
    assert not parent.running


def test_start_and_stop_are_idempotent() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events))
    parent.startService()
    parent.startService()
    assert events == ["start a"]
    parent.stopService()
    parent.stopService()
    assert events == ["start a", "stop a"]


def test_second_start_waits_for_the_first() -> None:
    events: list[str] = []
    a = Recorder("a", events, manual=True)
    parent = make(events, a)
    first = parent.startService()
    second = parent.startService()
    assert not first.called and not second.called
    assert a.pending is not None
    a.pending.callback(None)
    assert first.called and second.called
    assert events == ["start a"]


def test_stop_during_start_waits_then_unwinds() -> None:
    events: list[str] = []
    a = Recorder("a", events, manual=True)
    b = Recorder("b", events)
    parent = make(events, a, b)
    parent.startService()
    stopped = parent.stopService()
    assert not stopped.called
    assert a.pending is not None
    a.pending.callback(None)
    # b never starts: the stop came first; a is stopped again.
    assert events == ["start a", "stop a"]
    assert stopped.called


def test_privileged_start_is_passed_on_in_order() -> None:
    # Before twistd reports a daemon's start: a listener binds its port here.
    events: list[str] = []
    parent = make(events, Recorder("a", events), Recorder("b", events))
    parent.privilegedStartService()
    assert events == ["privileged a", "privileged b"]
    assert not parent.running


def test_a_failed_privileged_start_raises_naming_the_child() -> None:
    events: list[str] = []

    class Unbindable(Recorder):
        def privilegedStartService(self) -> None:
            super().privilegedStartService()
            raise OSError("port taken")

    parent = make(events, Recorder("a", events), Unbindable("b", events),
                  Recorder("c", events))
    with pytest.raises(StartError, match=r"^b failed to start: port taken$") as raised:
        parent.privilegedStartService()
    assert raised.value.name == "b"
    assert events == ["privileged a", "privileged b"]


def test_a_child_added_after_start_starts_and_stops_first() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events), Recorder("b", events))
    parent.startService()
    late = Recorder("c", events, manual=True)
    added = parent.addService(late)
    assert events == ["start a", "start b", "start c"]
    # addService on a running parent hands back the child's start.
    assert isinstance(added, Deferred) and not added.called
    assert late.pending is not None
    late.pending.callback(None)
    assert added.called
    events.clear()
    stopped = parent.stopService()
    assert stopped.called
    assert events == ["stop c", "stop b", "stop a"]
    assert not late.running


def test_a_child_added_before_start_is_not_started_by_adding() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events))
    added = parent.addService(Recorder("b", events))
    assert added is None or added.called
    assert events == []
    parent.startService()
    assert events == ["start a", "start b"]


def test_remove_on_a_running_parent_stops_the_child_and_forgets_it() -> None:
    events: list[str] = []
    a, b, c = Recorder("a", events), Recorder("b", events), Recorder("c", events)
    parent = make(events, a, b, c)
    parent.startService()
    events.clear()
    removed = parent.removeService(b)
    assert isinstance(removed, Deferred) and removed.called
    assert events == ["stop b"] and not b.running
    assert list(parent) == [a, c]
    events.clear()
    parent.stopService()
    assert events == ["stop c", "stop a"], "b is stopped once, not again"


def test_a_child_removed_during_start_before_its_turn_never_starts() -> None:
    events: list[str] = []
    a = Recorder("a", events, manual=True)
    b, c = Recorder("b", events), Recorder("c", events)
    parent = make(events, a, b, c)
    started = parent.startService()
    parent.removeService(b)
    assert a.pending is not None
    a.pending.callback(None)
    assert started.called
    assert events == ["start a", "start c"]
    events.clear()
    parent.stopService()
    assert events == ["stop c", "stop a"]


def test_a_child_added_during_start_goes_after_the_ones_before_it() -> None:
    events: list[str] = []
    a = Recorder("a", events, manual=True)
    parent = make(events, a, Recorder("b", events))
    started = parent.startService()
    added = parent.addService(Recorder("c", events))
    assert events == ["start a"], "c must wait for a and b"
    assert a.pending is not None
    a.pending.callback(None)
    assert events == ["start a", "start b", "start c"]
    assert started.called and added.called
    events.clear()
    parent.stopService()
    assert events == ["stop c", "stop b", "stop a"]


def test_a_child_added_while_stopping_is_not_started() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events))
    parent.startService()
    parent.stopService()
    parent.addService(Recorder("b", events))
    assert events == ["start a", "stop a"]


def test_a_failed_late_start_fails_its_add_with_start_error() -> None:
    events: list[str] = []
    parent = make(events, Recorder("a", events))
    parent.startService()
    added = parent.addService(Recorder("b", events, broken=True))
    failures: list[Exception] = []
    added.addErrback(lambda f: failures.append(f.value))
    assert len(failures) == 1 and isinstance(failures[0], StartError)
    assert failures[0].name == "b"
    # The parent keeps running what it had; b is not in the stop order.
    assert parent.running
    events.clear()
    parent.stopService()
    assert events == ["stop a"]
