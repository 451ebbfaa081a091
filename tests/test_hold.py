"""The mass-drop hold's rules (mpush.hold): pure, time passed in."""

from __future__ import annotations

import pytest

from mpush.balance import Candidate
from mpush.hold import MassDropHold


def servers(*last_octets: int) -> list[Candidate]:
    return [Candidate(f"10.0.0.{n}:3000", f"10.0.0.{n}") for n in last_octets]


def served(step_serve: list[Candidate]) -> list[str]:
    return sorted(c.address for c in step_serve)


TEN = servers(*range(1, 11))


def test_the_first_view_holds_nothing() -> None:
    hold = MassDropHold(30.0, 2.0)
    step = hold.update(0.0, TEN)
    assert step.serve == TEN and step.started == 0 and step.ended is None
    assert hold.held == {} and hold.next_end() is None


def test_six_of_ten_gone_at_once_are_held_until_they_are_back_or_the_hold_ends() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    step = hold.update(5.0, TEN[6:])
    assert (step.started, step.removed, step.base) == (6, 6, 10)
    assert served(step.serve) == served(TEN)
    assert hold.next_end() == 35.0 and hold.holds_started == 1
    # Two come back, one under a new node (a new Candidate object, same address).
    again = [*TEN[6:], TEN[0], Candidate(TEN[1].address, TEN[1].ip)]
    step = hold.update(10.0, again)
    assert served(step.serve) == served(TEN) and step.ended is None and step.started == 0
    assert len(hold.held) == 4
    step = hold.update(34.9, again)
    assert len(step.serve) == 10
    step = hold.update(35.0, again)  # the hold ends: the four others leave
    assert served(step.serve) == served(again) and step.ended == (2, 4)
    assert hold.held == {} and hold.next_end() is None and hold.holds_started == 1


def test_all_back_ends_the_hold_with_every_one_come_back() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    hold.update(1.0, TEN[:3])
    step = hold.update(4.0, TEN)
    assert step.ended == (7, 0) and step.serve == TEN and hold.held == {}


@pytest.mark.parametrize("left", [1, 4, 5])
def test_a_removal_of_one_or_of_at_most_half_is_applied_at_once(left: int) -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    step = hold.update(1.0, TEN[left:])
    assert step.serve == TEN[left:] and step.started == 0 and hold.held == {}


@pytest.mark.parametrize("size", [1, 3])
def test_one_server_leaving_is_never_a_mass_drop_even_in_a_tiny_cluster(size: int) -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN[:size])
    step = hold.update(1.0, TEN[1:size])
    assert step.serve == TEN[1:size] and hold.held == {}


def test_two_of_two_gone_is_a_mass_drop() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN[:2])
    step = hold.update(1.0, [])
    assert step.started == 2 and served(step.serve) == served(TEN[:2])


def test_a_burst_split_over_refreshes_within_the_window_adds_up() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    first = hold.update(10.0, TEN[3:])  # 3 of 10: applied
    assert first.serve == TEN[3:] and first.started == 0
    second = hold.update(11.5, TEN[6:])  # 6 of 10 within the window: all six held
    assert (second.started, second.removed, second.base) == (6, 6, 10)
    assert served(second.serve) == served(TEN)
    assert {h.until for h in hold.held.values()} == {41.5}


def test_removals_further_apart_than_the_window_are_separate_bursts() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    hold.update(10.0, TEN[3:])  # 3 of 10
    step = hold.update(12.5, TEN[6:])  # 3 of 7: a burst of its own
    assert step.serve == TEN[6:] and hold.held == {}


def test_a_server_that_came_and_went_within_a_burst_does_not_count() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN[:1])
    hold.update(1.0, TEN[1:2])  # replaced: one removal
    step = hold.update(2.0, TEN[2:3])  # the newcomer replaced too: still one of the first
    assert step.serve == TEN[2:3] and hold.held == {}


def test_a_second_mass_drop_during_a_hold_holds_its_own_for_their_own_time() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    hold.update(1.0, TEN[6:])  # 6 held until 31
    step = hold.update(20.0, TEN[9:])  # 3 of the 4 live ones: held until 50
    assert (step.started, step.removed, step.base) == (3, 3, 4)
    assert served(step.serve) == served(TEN) and hold.holds_started == 2
    assert hold.next_end() == 31.0
    step = hold.update(31.0, TEN[9:])
    assert len(step.serve) == 4 and step.ended is None
    step = hold.update(50.0, TEN[9:])
    assert step.serve == TEN[9:] and step.ended == (0, 9)


def test_a_small_removal_during_a_hold_is_applied_and_keeps_the_hold() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    hold.update(1.0, TEN[6:])
    step = hold.update(10.0, TEN[7:])  # one of the four live ones leaves: applied
    assert step.started == 0 and TEN[6] not in step.serve and len(hold.held) == 6


def test_a_hold_is_never_extended_by_the_same_burst() -> None:
    # The hold shorter than the burst window: a server whose hold ended is not held again.
    hold = MassDropHold(1.0, 10.0)
    hold.update(0.0, TEN)
    hold.update(1.0, TEN[6:])
    assert hold.update(2.0, TEN[6:]).ended == (0, 6)
    step = hold.update(3.0, TEN[8:])  # two more within the window: only they are held
    assert served(step.serve) == served(TEN[6:]) and step.started == 2


def test_everything_gone_is_held_then_empty() -> None:
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, TEN)
    assert served(hold.update(1.0, []).serve) == served(TEN)
    assert hold.update(31.0, []).serve == []


def test_zero_disables_the_hold() -> None:
    hold = MassDropHold(0.0, 2.0)
    hold.update(0.0, TEN)
    step = hold.update(1.0, [])
    assert step.serve == [] and step.started == 0 and hold.held == {}


def test_only_ips_with_no_live_server_are_frozen() -> None:
    shared = Candidate("10.0.0.1:3001", "10.0.0.1")  # shares 10.0.0.1 with TEN[0]
    hold = MassDropHold(30.0, 2.0)
    hold.update(0.0, [*TEN[:4], shared])
    hold.update(1.0, [shared, TEN[3]])  # TEN[0..2] held; 10.0.0.1 still has a live server
    assert hold.frozen_ips() == frozenset({"10.0.0.2", "10.0.0.3"})


@pytest.mark.parametrize(("hold", "window"), [(-1.0, 1.0), (1.0, -0.5), (float("nan"), 1.0)])
def test_bad_arguments_are_refused(hold: float, window: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        MassDropHold(hold, window)
