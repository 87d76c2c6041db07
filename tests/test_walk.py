"""Proving a walk missed no order (``_walk``): the rules one by one, then walks simulated with
random completion orders, retries and arrivals at the head, checked against the list itself."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch._walk import Fetch, FetchLog, pages_to_reread

PAGE = 20


def run(first: int, *, page: int = 1, count: int = PAGE) -> tuple[int, ...]:
    return tuple(range(first, first - count, -1))


def test_pages_read_one_after_another_are_proven_whatever_their_numbers() -> None:
    log = FetchLog()
    log.answered(1, (100, 90, 80), last=False, sent=log.sending())
    log.answered(2, (70, 60), last=True, sent=log.sending())
    assert pages_to_reread(log.fetches, to_end=True) == []


def test_pages_read_side_by_side_with_gaps_in_their_numbers_are_read_again() -> None:
    """Nothing proves that no order moved from page 1 into page 2 between the two reads."""
    log = FetchLog()
    sent = log.sending()
    log.answered(2, (70, 60), last=True, sent=sent)
    log.answered(1, (100, 90, 80), last=False, sent=sent)
    assert pages_to_reread(log.fetches, to_end=True) == [2]


def test_consecutive_numbers_prove_two_pages_read_side_by_side() -> None:
    log = FetchLog()
    log.answered(2, run(80), last=True, sent=0)
    log.answered(1, run(100), last=False, sent=0)
    assert pages_to_reread(log.fetches, to_end=True) == []


def test_a_hole_between_pages_read_out_of_order_is_found_even_with_consecutive_numbers() -> None:
    """Page 2 answered before three orders arrived, page 1 after: 78, 77 and 76 are missing."""
    log = FetchLog()
    log.answered(2, run(80), last=True, sent=0)  # 80..61 while the head was 100
    log.answered(1, run(103), last=False, sent=0)  # 103..84 after 101, 102, 103 arrived
    assert pages_to_reread(log.fetches, to_end=True) == [2]


def test_a_read_of_the_next_page_sent_after_the_answer_closes_the_hole() -> None:
    log = FetchLog()
    log.answered(2, run(80), last=True, sent=0)
    log.answered(1, run(103), last=False, sent=0)
    log.answered(2, run(83), last=True, sent=log.sending())  # 83..64: shows 78, 77, 76
    assert pages_to_reread(log.fetches, to_end=True) == []


def test_two_reads_of_page_one_with_the_same_newest_order_prove_everything_between() -> None:
    """No order arrived between the two snapshots, so pages read between them abut."""
    log = FetchLog()
    log.answered(1, (100, 90, 80), last=False, sent=log.sending())
    sent = log.sending()
    log.answered(3, (40, 30), last=True, sent=sent)
    log.answered(2, (70, 60, 50), last=False, sent=sent)
    assert pages_to_reread(log.fetches, snapshots=log.snapshots(), to_end=True) == [3]
    log.answered(1, (100, 90, 80), last=False, sent=log.sending(), probe=True)
    assert pages_to_reread(log.fetches, snapshots=log.snapshots(), to_end=True) == []


def test_a_snapshot_with_a_new_head_proves_nothing() -> None:
    log = FetchLog()
    log.answered(1, (100, 90, 80), last=False, sent=log.sending())
    sent = log.sending()
    log.answered(3, (40, 30), last=True, sent=sent)
    log.answered(2, (70, 60, 50), last=False, sent=sent)
    log.answered(1, (110, 100, 90), last=False, sent=log.sending(), probe=True)
    assert pages_to_reread(log.fetches, snapshots=log.snapshots(), to_end=True) == [3]


def test_the_oldest_order_seen_must_be_the_end_of_the_list() -> None:
    log = FetchLog()
    log.answered(1, (100, 90, 80), last=False, sent=log.sending())
    assert pages_to_reread(log.fetches, to_end=True) == [2]
    assert pages_to_reread(log.fetches, to_end=False) == []
    log.answered(2, (), last=True, sent=log.sending())  # past the end, read after page 1
    assert pages_to_reread(log.fetches, to_end=True) == []


def test_an_empty_walk_needs_nothing() -> None:
    assert pages_to_reread([], to_end=True) == []
    assert pages_to_reread([Fetch(1, (), True, 0, 1)], to_end=True) == []


# --- walks simulated against a list that grows at the head ---------------------------------


@dataclass
class Request:
    page: int
    sent: int
    probe: bool
    answer: tuple[tuple[int, ...], bool] | None = None  # what the server read, when it did


@dataclass
class World:
    """The list (newest first), requests in flight, arrivals at the head and random timing."""

    rng: random.Random
    numbers: list[int]
    sparse: bool
    arrivals_left: int
    concurrency: int
    log: FetchLog = field(default_factory=FetchLog)
    requests: int = 0

    def arrive(self) -> None:
        step = self.rng.randint(1, 9) if self.sparse else 1
        self.numbers.insert(0, (self.numbers[0] if self.numbers else 1000) + step)
        self.arrivals_left -= 1

    def read(self, page: int) -> tuple[tuple[int, ...], bool]:
        total = max(1, -(-len(self.numbers) // PAGE))
        return tuple(self.numbers[(page - 1) * PAGE : page * PAGE]), page >= total

    def batch(self, pages: list[int], *, probe: bool = False) -> None:
        """Send ``pages`` at most ``concurrency`` at a time; the server reads each at a random
        moment before it answers (a retried request is one read late), and orders arrive at
        random moments in between."""
        waiting = list(pages)
        flying: list[Request] = []
        while waiting or flying:
            moves = ["send"] * (bool(waiting) and len(flying) < self.concurrency)
            moves += ["serve"] * any(r.answer is None for r in flying)
            moves += ["answer"] * any(r.answer is not None for r in flying)
            moves += ["arrive"] * (self.arrivals_left > 0)
            move = self.rng.choice(moves)
            if move == "send":
                page = waiting.pop(self.rng.randrange(len(waiting)))
                flying.append(Request(page, self.log.sending(), probe))
                self.requests += 1
            elif move == "serve":
                request = self.rng.choice([r for r in flying if r.answer is None])
                request.answer = self.read(request.page)
            elif move == "answer":
                request = self.rng.choice([r for r in flying if r.answer is not None])
                flying.remove(request)
                assert request.answer is not None
                numbers, last = request.answer
                self.log.answered(
                    request.page, numbers, last=last, sent=request.sent, probe=request.probe
                )
            else:
                self.arrive()


def full_walk(world: World) -> bool:
    """What the poller does: page 1, the rest side by side, then re-reads until proven."""
    world.batch([1])
    total = max(1, -(-len(world.numbers) // PAGE))
    world.batch(list(range(2, total + 1)))
    probed = False
    for _ in range(20):
        wanted = pages_to_reread(world.log.fetches, snapshots=world.log.snapshots(), to_end=True)
        if not wanted:
            return True
        if len(wanted) > 1 and not probed:
            probed = True
            world.batch([1], probe=True)
            continue
        world.batch(wanted)
    return False


@settings(max_examples=500, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 160),
    arrivals=st.integers(0, 100),
    concurrency=st.integers(1, 6),
    sparse=st.booleans(),
)
def test_no_order_is_missed_whatever_the_completion_order_retries_and_arrivals(
    seed: int, size: int, arrivals: int, concurrency: int, sparse: bool
) -> None:
    """Every order that existed when the walk began is seen, and so is every order older than
    the newest one seen (the known set stays closed downwards, which the head walk relies on)."""
    rng = random.Random(seed)
    numbers = sorted(rng.sample(range(1, 990), size), reverse=True) if sparse else []
    world = World(rng, numbers or list(range(size, 0, -1)), sparse, arrivals, concurrency)
    before = set(world.numbers)
    assert full_walk(world)
    seen = {n for fetch in world.log.fetches for n in fetch.numbers}
    assert before <= seen
    if seen:
        assert {n for n in world.numbers if n <= max(seen)} <= seen


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(1, 300),
    concurrency=st.integers(1, 6),
    sparse=st.booleans(),
)
def test_without_arrivals_a_walk_costs_its_pages_and_at_most_one_read_of_page_one(
    seed: int, size: int, concurrency: int, sparse: bool
) -> None:
    """Consecutive numbers prove every page for free; otherwise one snapshot of page 1 does."""
    rng = random.Random(seed)
    numbers = sorted(rng.sample(range(1, 5000), size), reverse=True)
    world = World(rng, numbers if sparse else list(range(size, 0, -1)), sparse, 0, concurrency)
    pages = -(-size // PAGE)
    assert full_walk(world)
    assert world.requests <= pages + (1 if sparse else 0)
