"""Unique claims under every interleaving of two writers' steps, deterministically.

Each writer runs on its own thread with its own SealedTable, and its UniqueGuard's ``on_step``
seam parks it before each step of the claim protocol (each request: claim create, read,
re-claim, takeover, owner read, item write, promote, ...). A scheduler in the test then lets
the writers run step by step in a chosen order: writer X runs ``i`` steps, writer Y runs ``j``
steps, then X finishes, then Y finishes, for every ``i`` and ``j`` and both orders. That puts
every step of one writer between every pair of consecutive steps of the other, including the
reported case: A claims, stalls before its item write past its lease, B reads the expired
claim and A's (absent) item and decides to take over, A writes and marks its claim held, and
only then does B's takeover reach DynamoDB.

After each schedule, against dynalite: at most one item holds the value; a writer that
returned holds it and a writer that raised UniqueConstraintError does not; the claim names
the holder. In the same-item scenarios both writers write one item (same primary key, so the
same claim owner): both must succeed, the item holds the value and the claim names it, held.
Leases are zero in the adversarial runs (every pending claim has expired by the time another
writer reads it), and long in the others.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dynaseal import (
    BlindIndex,
    LocalKeyring,
    Schema,
    SealedTable,
    UniqueConstraintError,
)
from support import claim_for

_STEP_TIMEOUT = 30.0
_runs = itertools.count()


def _schema() -> Schema:
    return Schema("user_id", blind_indexes={
        "email": BlindIndex("email_bidx", bits=32, normalize="casefold", unique=True)})


class Writer:
    """One writer on its own thread, parked by its guard's ``on_step`` before each step."""

    def __init__(self, name: str, table: SealedTable, action: Callable[[SealedTable], Any]
                 ) -> None:
        self.name = name
        self.steps: list[str] = []
        self.done = False
        self.result: Any = None
        self._go = threading.Semaphore(0)
        self._parked = threading.Semaphore(0)
        table._unique.on_step = self._park
        self._thread = threading.Thread(target=self._run, args=(table, action), daemon=True)
        self._thread.start()

    def _park(self, step: str) -> None:
        self.steps.append(step)
        self._parked.release()
        if not self._go.acquire(timeout=_STEP_TIMEOUT):
            raise TimeoutError(f"writer {self.name} was never resumed after {step}")

    def _run(self, table: SealedTable, action: Callable[[SealedTable], Any]) -> None:
        self._go.acquire()
        try:
            self.result = action(table)
        except BaseException as e:
            self.result = e
        finally:
            self.done = True
            self._parked.release()

    def advance(self) -> None:
        """Let the writer run to its next step (sending the request it is parked before), or
        to its end."""
        if self.done:
            return
        self._go.release()
        assert self._parked.acquire(timeout=_STEP_TIMEOUT), f"writer {self.name} is stuck"

    def finish(self) -> None:
        while not self.done:
            self.advance()
        self._thread.join(_STEP_TIMEOUT)


@dataclass(frozen=True)
class Scenario:
    """Two writers' actions on one value, after a setup; ``claims[w]`` says whether writer w's
    action, if it returns, leaves its item holding the value."""

    name: str
    setup: Callable[[SealedTable, str, str, str], None]
    a: Callable[[SealedTable, str, str], Any]
    b: Callable[[SealedTable, str, str], Any]
    a_claims: bool
    b_claims: bool = True
    same_item: bool = False  # B writes A's item (same primary key), not its own


def _nothing(t: SealedTable, a: str, b: str, v: str) -> None:
    return None


def _stale_held_claim(t: SealedTable, a: str, b: str, v: str) -> None:
    """A ghost item held the value and vanished without releasing its claim."""
    t.put_item({"user_id": f"{a}-ghost", "email": v})
    t.table.meta.client.delete_item(TableName=t.name, Key={"user_id": f"{a}-ghost"})


def _a_has_other(t: SealedTable, a: str, b: str, v: str) -> None:
    t.put_item({"user_id": a, "email": f"other-{v}"})


def _a_holds(t: SealedTable, a: str, b: str, v: str) -> None:
    t.put_item({"user_id": a, "email": v})


def _put(t: SealedTable, uid: str, v: str) -> Any:
    return t.put_item({"user_id": uid, "email": v.upper() if uid.startswith("b") else v})


def _put_upper(t: SealedTable, uid: str, v: str) -> Any:
    return t.put_item({"user_id": uid, "email": v.upper()})


def _update_to(t: SealedTable, uid: str, v: str) -> Any:
    return t.update_item({"user_id": uid}, set={"email": v})


def _update_other(t: SealedTable, uid: str, v: str) -> Any:
    return t.update_item({"user_id": uid}, set={"n": 1})


def _delete(t: SealedTable, uid: str, v: str) -> Any:
    return t.delete_item({"user_id": uid})


def _change_away(t: SealedTable, uid: str, v: str) -> Any:
    return t.update_item({"user_id": uid}, set={"email": f"moved-{v}"})


SCENARIOS = [
    Scenario("two-new-items", _nothing, _put, _put, a_claims=True),
    Scenario("stale-held-claim", _stale_held_claim, _put, _put, a_claims=True),
    Scenario("update-to-the-value", _a_has_other, _update_to, _put, a_claims=True),
    Scenario("update-keeping-the-value", _a_holds, _update_other, _put, a_claims=True),
    Scenario("put-keeping-the-value", _a_holds, _put, _put, a_claims=True),
    Scenario("delete-the-holder", _a_holds, _delete, _put, a_claims=False),
    Scenario("change-away-from-the-value", _a_holds, _change_away, _put, a_claims=False),
    # two writers of one item with one value (an app and `dynaseal migrate`, say)
    Scenario("same-item-new-value", _nothing, _put, _put_upper, a_claims=True, same_item=True),
    Scenario("same-item-held-value", _a_holds, _put, _put_upper, a_claims=True,
             same_item=True),
    Scenario("same-item-update-to-the-value", _a_has_other, _update_to, _put_upper,
             a_claims=True, same_item=True),
    Scenario("same-item-update-keeping-the-value", _a_holds, _update_other, _put_upper,
             a_claims=True, same_item=True),
]


@pytest.fixture(scope="module")
def unique_table(make_table: Callable[..., Any]) -> Any:
    return make_table(gsis=("email_bidx",), claims=True)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyring:
    return LocalKeyring.generate(tmp_path_factory.mktemp("interleavings") / "keys.json")


def _consistent_holders(t: SealedTable, ids: list[str], v: str) -> list[str]:
    """Items among ``ids`` holding ``v``, by consistent reads (a GSI is eventually consistent)."""
    index = t.schema.blind_indexes["email"]
    out = []
    for uid in ids:
        item = t.get_item({"user_id": uid}, ConsistentRead=True)
        if item is not None and "email" in item and (
                index.normalized(item["email"]) == index.normalized(v)):
            out.append(uid)
    return out


def _run(table: Any, keyring: LocalKeyring, scenario: Scenario, lease: float,
         schedule: Callable[[Writer, Writer], None]) -> tuple[Writer, Writer, list[str]]:
    n = next(_runs)
    a_id, b_id, v = f"a{n}", f"b{n}", f"v{n}@example.com"
    setup = SealedTable(table, schema=_schema(), keyring=keyring)
    scenario.setup(setup, a_id, b_id, v)
    tables = [SealedTable(table, schema=_schema(), keyring=keyring) for _ in range(2)]
    for t in tables:
        t._unique.lease_seconds = lease
    a = Writer("A", tables[0], lambda t: scenario.a(t, a_id, v))
    b_uid = a_id if scenario.same_item else b_id
    b = Writer("B", tables[1], lambda t: scenario.b(t, b_uid, v))
    schedule(a, b)
    a.finish()
    b.finish()
    holders = _consistent_holders(setup, [a_id, b_id, f"{a_id}-ghost"], v)
    # the invariant: at most one item holds the value
    assert len(holders) <= 1, (scenario.name, a.steps, b.steps, holders)
    if scenario.same_item:
        # one owner: neither writer may be refused its own value
        for w in (a, b):
            assert not isinstance(w.result, BaseException), (scenario.name, w.name, a.steps,
                                                             b.steps, w.result)
        assert holders == [a_id], (scenario.name, a.steps, b.steps, holders)
        claim = claim_for(setup, v)
        assert claim is not None, (scenario.name, a.steps, b.steps)
        assert claim["owner"] == {"user_id": a_id}, (scenario.name, a.steps, b.steps)
        assert claim["state"] == "held", (scenario.name, a.steps, b.steps, claim["state"])
        return a, b, holders
    for w, uid, claims in ((a, a_id, scenario.a_claims), (b, b_id, scenario.b_claims)):
        if isinstance(w.result, BaseException):
            assert isinstance(w.result, UniqueConstraintError), (scenario.name, w.name,
                                                                 a.steps, b.steps, w.result)
            # refused: it does not hold the value, unless it held it before and kept it
            assert uid not in holders or (w is a and scenario.setup is _a_holds), (
                scenario.name, w.name, a.steps, b.steps)
        elif claims:
            assert holders == [uid], (scenario.name, w.name, a.steps, b.steps, holders)
    if holders:
        claim = claim_for(setup, v)
        assert claim is not None, (scenario.name, a.steps, b.steps)
        assert claim["owner"] == {"user_id": holders[0]}, (scenario.name, a.steps, b.steps)
    return a, b, holders


def _steps_then_finish(first_steps: int, second_steps: int, swap: bool
                       ) -> Callable[[Writer, Writer], None]:
    def schedule(a: Writer, b: Writer) -> None:
        x, y = (b, a) if swap else (a, b)
        x.advance()  # each to its first step: the work before it (seal, reads) is done
        y.advance()
        for _ in range(first_steps):
            x.advance()
        for _ in range(second_steps):
            y.advance()
        x.finish()
    return schedule


def _pairs(limit: int) -> Iterator[tuple[int, int, bool]]:
    for i in range(limit):
        for j in range(limit):
            for swap in (False, True):
                yield i, j, swap


STEP_LIMIT = 6  # every solo run below takes at most this many steps: see the first test


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_solo_runs_fit_the_step_limit(unique_table, ring, scenario):
    for lease in (0.0, 30.0):
        a, b, _ = _run(unique_table, ring, scenario, lease,
                       lambda a, b: (a.finish(), b.advance()))
        assert len(a.steps) <= STEP_LIMIT, a.steps
        assert len(b.steps) <= STEP_LIMIT, b.steps


@pytest.mark.parametrize("lease", [0.0, 30.0], ids=["expired-leases", "live-leases"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_pair_of_steps_keeps_the_value_unique(unique_table, ring, scenario, lease):
    outcomes = set()
    for i, j, swap in _pairs(STEP_LIMIT):
        a, b, _ = _run(unique_table, ring, scenario, lease, _steps_then_finish(i, j, swap))
        outcomes.add((type(a.result).__name__, type(b.result).__name__))
    if scenario.name == "two-new-items":
        # both orders of winning were explored
        assert {("NoneType", "UniqueConstraintError"),
                ("UniqueConstraintError", "NoneType")} <= outcomes, outcomes


def test_the_reported_stall_is_refused(unique_table, ring):
    """A claims and stalls past its lease before its item write; B reads the expired claim and
    A's absent item, decides to take over; A writes and marks the claim held; then B's
    takeover arrives. It must fail (the claim changed since B read it), and B is refused."""

    def schedule(a: Writer, b: Writer) -> None:
        a.advance()
        b.advance()
        a.advance()  # A: claim:create sent; parked before item:write
        while b.steps[-1] != "claim:takeover":
            b.advance()  # B: claim:create (fails), claim:read, owner:read; parked before takeover
        a.finish()  # A: item:write, claim:promote
        b.finish()

    a, b, holders = _run(unique_table, ring, SCENARIOS[0], 0.0, schedule)
    assert a.steps == ["claim:create", "item:write", "claim:promote"]
    assert b.steps[:4] == ["claim:create", "claim:read", "owner:read", "claim:takeover"]
    assert a.result is None
    assert isinstance(b.result, UniqueConstraintError)
    assert len(holders) == 1
    assert holders[0].startswith("a")  # A's item, and only it


def test_two_writers_of_one_item_join_one_claim(unique_table, ring):
    """The same-owner race: A creates the claim and is parked before its item write; B, a
    writer of the same item and value, finds A's pending claim and joins it (same token, its
    own lease) instead of replacing it. A writes and promotes (its first promote fails: B's
    join changed the claim; A re-reads, still its token, promotes what it read); B writes,
    finds the claim already held under the shared token and confirms it. Both succeed."""

    def schedule(a: Writer, b: Writer) -> None:
        a.advance()
        b.advance()
        a.advance()  # A: claim:create sent; parked before item:write
        while b.steps[-1] != "item:write":
            b.advance()  # B: claim:create (fails), claim:read, claim:join
        a.finish()
        b.finish()

    a, b, holders = _run(unique_table, ring, SCENARIOS[7], 30.0, schedule)
    assert SCENARIOS[7].name == "same-item-new-value"
    assert a.steps == ["claim:create", "item:write", "claim:promote", "claim:reread",
                       "claim:promote"]
    assert b.steps == ["claim:create", "claim:read", "claim:join", "item:write",
                       "claim:promote", "claim:reread", "claim:confirm"]
    assert a.result is None and b.result is None
    assert holders[0].startswith("a")
