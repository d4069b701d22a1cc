"""Unique blind indexes without DynamoDB transactions.

A value is reserved by a *claim* item in a companion table (``<table>.dynaseal-claims``), keyed
by a full-length HMAC of the normalised value under a key derived for that table and attribute.
Conditional writes on the claim decide races: of two writers of one value exactly one creates
the claim. A claim is ``pending`` (with a lease) while its owner writes the item, then ``held``.

Crashes never block a value forever, because a claim is only trusted as long as the truth agrees:
a writer that meets another owner's held claim, or a pending one whose lease ran out, reads that
owner's item, and if the item does not hold the value the claim is stale and is taken over. The
truth check fails closed: an owner item this process cannot open counts as holding the value.

Every transition of a claim is a write conditioned on the whole state it was decided from
(token, state, lease and version, as read), never on part of it: a decision taken on a claim
that has changed since (its owner marked it held meanwhile, say) fails and is taken again on
what the claim is now. Two writers of the same item share one claim: the second joins the
first's (same token, a new lease) rather than replacing it, so neither is refused its own
value; after its item write each makes a write that changes the claim (promote, or confirm
one a co-writer already promoted), so a takeover decided before that write always fails. A
write that outlives its lease finds its claim taken over when it tries to mark it held; it
then rolls its item back (conditioned on its own write) and raises UniqueConstraintError, so
the writer that took the claim keeps the value. The state machine is
drawn in docs/BLIND_INDEXES.md.

The guard works on a narrow interface, not on SealedTable: an ItemSealer (key encoding, the
keyring's index keys), the table's ``open_item`` (its one open path: the sealer, or the
migration reader for an item not sealed yet) and two request functions,
``request(operation, key=None, **kwargs)`` on the sealed table and
``claims_request(operation, **kwargs)`` on the claims table, both taking and returning
resource-layer values. ``on_step``, when set, is called with the name of each step
just before its request: the seam a test scheduler uses to interleave writers deterministically.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from .blind_index import BlindIndex
from .conditions import unchanged_condition
from .errors import DynasealError, IntegrityError, UniqueConstraintError
from .sealer import ItemSealer, describe_key
from .tables import claims_table_name

__all__ = ["HELD", "PENDING", "Request", "UniqueGuard"]

log = logging.getLogger("dynaseal")

Request = Callable[..., Any]
"""``request(operation, key=None, **kwargs)``: one DynamoDB request, resource-layer values."""

_CLAIM_LABEL = b"dynaseal/v1/claim"
_MAX_ROUNDS = 10
PENDING = "pending"
HELD = "held"
_NEW_CLAIM = "new"

# A claim item: {"claim": id, "owner": key, "token": 16 random bytes, "state": PENDING or HELD,
# "lease_until": epoch milliseconds, only while PENDING, "version": a number}. A whole-claim
# write (create, takeover) draws a new token and starts at version 0; an update of the claim
# (join, promote, confirm, unjoin, promote-other) keeps the token and owner and adds one to
# the version, so (token, version) never comes back once changed.
_STATE_NAMES = {"#t": "token", "#s": "state", "#l": "lease_until", "#v": "version"}
_NEW = {"#t": ":newt", "#s": ":news", "#l": ":newl", "#v": ":newv"}


def _conditional_failed(e: ClientError) -> bool:
    return bool(e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _as_read(claim: Mapping[str, Any]) -> dict[str, Any]:
    """Condition: the claim is still exactly as read (token, state, lease, version: present or
    absent)."""
    values: dict[str, Any] = {}
    clauses = []
    for placeholder, attr in _STATE_NAMES.items():
        value = claim.get(attr)
        if value is None:
            clauses.append(f"attribute_not_exists({placeholder})")
        else:
            ref = ":" + placeholder[1:]
            values[ref] = bytes(value) if attr == "token" else value
            clauses.append(f"{placeholder} = {ref}")
    out: dict[str, Any] = {"ConditionExpression": " AND ".join(clauses),
                           "ExpressionAttributeNames": dict(_STATE_NAMES)}
    if values:
        out["ExpressionAttributeValues"] = values
    return out


def _token(claim: Mapping[str, Any]) -> bytes:
    token = claim.get("token")
    if isinstance(token, bytes | bytearray | Binary):
        raw: Any = token  # boto3's Binary converts with bytes(); its stubs do not say so
        return bytes(raw)
    return b""


def _version(claim: Mapping[str, Any]) -> int:
    version = claim.get("version")
    if isinstance(version, int | Decimal) and not isinstance(version, bool):
        return int(version)
    return 0


class UniqueGuard:
    """Enforces the unique blind indexes of one table."""

    def __init__(self, sealer: ItemSealer, request: Request, claims_request: Request, *,
                 lease_seconds: float = 30.0,
                 open_item: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None) -> None:
        self.sealer = sealer
        # the table's one open path (SealedTable._open), so that during a migration an item
        # not sealed yet is read by the table's migration reader here too
        self._open = open_item if open_item is not None else sealer.open
        self.table_name = sealer.table_name
        self.schema = sealer.schema
        self._request = request
        self._claims = claims_request
        self.claims_table = claims_table_name(self.table_name)
        self.lease_seconds = lease_seconds
        self.on_step: Callable[[str], None] | None = None
        self._indexes = [(src, ix) for src, ix in self.schema.blind_indexes.items() if ix.unique]
        self._keys: dict[str, bytes] = {}

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    # -- claims -----------------------------------------------------------------------------

    def claim_id(self, source: str, index: BlindIndex, value: Any) -> bytes:
        # the value is checked before the key is touched: no key in a frame that can raise
        data = _CLAIM_LABEL + index.normalized(value)
        h = crypto_hmac.HMAC(self._claim_key(source), hashes.SHA256())
        h.update(data)
        return h.finalize()

    def _claim_key(self, source: str) -> bytes:
        key = self._keys.get(source)
        if key is None:
            key = self.sealer.keyring.index_key(self.table_name, "\x00claim\x00" + source)
            self._keys[source] = key
        return key

    def _get(self, cid: bytes, step: str = "claim:read") -> dict[str, Any] | None:
        self._step(step)
        item: dict[str, Any] | None = self._claims("get_item", Key={"claim": cid},
                                                   ConsistentRead=True).get("Item")
        return item

    def _conditional(self, step: str, operation: str, **kwargs: Any) -> bool:
        """A conditional claim request: False if its condition failed."""
        self._step(step)
        try:
            self._claims(operation, **kwargs)
        except ClientError as e:
            if _conditional_failed(e):
                return False
            raise
        return True

    def _lease(self) -> int:
        return int((time.time() + self.lease_seconds) * 1000)

    def _write(self, step: str, cid: bytes, owner: Mapping[str, Any],
               expected: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Write a whole new pending claim of ours (new token, version 0) over ``expected`` (the
        claim as read; None: no claim). Returns the claim state written, or None if the claim
        is no longer as read."""
        mine = {"token": secrets.token_bytes(16), "state": PENDING,
                "lease_until": self._lease(), "version": 0}
        item = {"claim": cid, "owner": dict(owner), **mine}
        if expected is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(claim)"}
        else:
            condition = _as_read(expected)
        return mine if self._conditional(step, "put_item", Item=item, **condition) else None

    def _update(self, step: str, cid: bytes, expected: Mapping[str, Any], state: str,
                lease_until: int | None) -> dict[str, Any] | None:
        """Move the claim from ``expected`` (as read, or as we last wrote it) to ``state``,
        keeping its owner and token, one version up. Returns the claim state written, or None
        if the claim is no longer as expected."""
        mine = {"token": _token(expected) or secrets.token_bytes(16), "state": state,
                "lease_until": lease_until, "version": _version(expected) + 1}
        sets = [f"{name} = {_NEW[name]}" for name, attr in _STATE_NAMES.items()
                if mine[attr] is not None]
        update = "SET " + ", ".join(sets) + ("" if lease_until is not None else " REMOVE #l")
        condition = _as_read(expected)
        values = {**condition.get("ExpressionAttributeValues", {}),
                  **{_NEW[name]: mine[attr] for name, attr in _STATE_NAMES.items()
                     if mine[attr] is not None}}
        if not self._conditional(step, "update_item", Key={"claim": cid},
                                 UpdateExpression=update,
                                 **{**condition, "ExpressionAttributeValues": values}):
            return None
        return mine

    def _promote(self, cid: bytes, mine: Mapping[str, Any]) -> bool:
        """After our item write: mark the claim held; False if it is no longer ours (taken over
        after its lease). Always by a write that changes the claim (promote from pending,
        confirm when already held), so that whatever another writer decided from the claim
        as it was before our item write (a takeover after a truth check that missed our item)
        fails. The claim may have changed under the same token: a writer of the same item
        joined it, or promoted it, or a refused writer promoted it for us; each is still ours
        and is settled on what it is now."""
        expected: Mapping[str, Any] = mine
        for attempt in range(_MAX_ROUNDS):
            step = "claim:promote" if expected.get("state") == PENDING else "claim:confirm"
            if self._update(step, cid, expected, HELD, None) is not None:
                return True
            if attempt:
                _backoff(attempt)  # many writers of one item: let them spread out
            claim = self._get(cid, "claim:reread")
            if claim is None or _token(claim) != mine["token"]:
                return False
            expected = claim
        raise DynasealError(
            f"unique claim still contended after {_MAX_ROUNDS} rounds after the item write "
            f"(table {self.table_name!r}); its lease and the truth check will settle it"
        )

    def _live(self, claim: Mapping[str, Any]) -> bool:
        lease = claim.get("lease_until")
        return (claim.get("state") == PENDING and isinstance(lease, Decimal)
                and lease > Decimal(int(time.time() * 1000)))

    def _same_owner(self, claim: Mapping[str, Any], owner_bytes: bytes) -> bool:
        owner = claim.get("owner")
        if not isinstance(owner, dict):
            return False
        try:
            return self.sealer._key_bytes(owner) == owner_bytes
        except (KeyError, DynasealError):
            return False

    def _owner_holds(self, claim: Mapping[str, Any], source: str, index: BlindIndex,
                     value: Any) -> bool:
        """Does the claim's owner item really hold the value now? (The truth check.)

        Fails closed: an owner item this process cannot open (a key it does not hold, or
        tampering) counts as holding the value, so a claim is never taken over on a guess.
        """
        owner = claim.get("owner")
        if not isinstance(owner, dict):
            return False
        try:
            key = self.sealer.key_of(owner)
        except DynasealError:
            return False
        self._step("owner:read")
        try:
            stored = self._request("get_item", key=key, Key=key, ConsistentRead=True).get("Item")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ValidationException":
                return False  # the owner key does not fit the table: no item can hold it
            raise
        if stored is None:
            return False
        try:
            item = self._open(stored)
        except IntegrityError:
            log.warning("dynaseal: the holder of a %r claim cannot be opened here; treating "
                        "the value as held (table %s)", source, self.table_name)
            return True
        held = source in item and _normal_or_none(index, item[source]) == index.normalized(value)
        item.clear()  # another owner's item: nothing of it outlives this check
        return held

    def _acquire(self, source: str, index: BlindIndex, value: Any,
                 owner: Mapping[str, Any]) -> tuple[bytes, dict[str, Any], str | None]:
        """Reserve ``value`` for ``owner``: (claim id, the claim state as we wrote it, and how
        to give it back if our item write does not happen: ``_NEW_CLAIM`` (delete it), HELD (a
        held claim we joined: make it held again), None (a pending one we joined: leave it to
        the writer that created it)).

        A claim of the same owner (another writer of this very item, or a claim it already
        holds) is joined, not replaced: same token, a new lease, one version up. Replacing it
        would make the other writer's promote fail and roll back a write of its own value."""
        cid = self.claim_id(source, index, value)
        mine = self._write("claim:create", cid, owner, None)
        if mine is not None:
            return cid, mine, _NEW_CLAIM
        owner_bytes = self.sealer._key_bytes(owner)
        where = describe_key(self.schema, owner)
        joins_lost = 0
        for _ in range(_MAX_ROUNDS):
            claim = self._get(cid)
            if claim is None:
                mine = self._write("claim:create", cid, owner, None)
                if mine is not None:
                    return cid, mine, _NEW_CLAIM
                continue
            if self._same_owner(claim, owner_bytes):
                mine = self._update("claim:join", cid, claim, PENDING, self._lease())
                if mine is not None:
                    return cid, mine, HELD if claim.get("state") == HELD else None
                joins_lost += 1
                _backoff(joins_lost)  # many writers of one item: let them spread out
                continue
            if self._live(claim):
                raise UniqueConstraintError(self.table_name, source, where)
            if self._owner_holds(claim, source, index, value):
                if claim.get("state") == PENDING:
                    self._update("claim:promote-other", cid, claim, HELD, None)
                raise UniqueConstraintError(self.table_name, source, where)
            log.info("dynaseal: taking over a stale %r claim (table %s)", source, self.table_name)
            mine = self._write("claim:takeover", cid, owner, claim)
            if mine is not None:
                return cid, mine, _NEW_CLAIM
        raise DynasealError(
            f"unique index {source!r}: claim still contended after {_MAX_ROUNDS} rounds "
            f"(table {self.table_name!r}, key {where})"
        )

    def _still_ours(self, source: str, index: BlindIndex, value: Any,
                    owner_bytes: bytes) -> bool:
        """An unchanged value: is its claim still this owner's? (If a slow write of ours
        brought the value back after the claim had been taken over, it is not.)"""
        claim = self._get(self.claim_id(source, index, value), "claim:check")
        return claim is not None and self._same_owner(claim, owner_bytes)

    def _release(self, source: str, index: BlindIndex, value: Any,
                 owner: Mapping[str, Any]) -> None:
        """Drop our claim on a value we no longer hold, unless the truth says otherwise."""
        cid = self.claim_id(source, index, value)
        claim = self._get(cid, "claim:release-read")
        if claim is None or not self._same_owner(claim, self.sealer._key_bytes(owner)):
            return
        if self._live(claim) or self._owner_holds(claim, source, index, value):
            return
        self._conditional("claim:delete", "delete_item", Key={"claim": cid}, **_as_read(claim))

    # -- the operations SealedTable delegates -----------------------------------------------

    def put(self, item: Mapping[str, Any], stored: Mapping[str, Any], kwargs: Mapping[str, Any],
            previous: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Claim the item's unique values, write it, then settle the claims.

        If a claim was taken over while the write was under way (the write outlived the
        lease), the write is rolled back and the value is left to the writer that took it.
        With ``previous`` (the item as read, the write conditional on it), a value that does
        not change keeps its claim if the claim is still this owner's.
        """
        owner = self.sealer.key_of(item)
        owner_bytes = self.sealer._key_bytes(owner)
        acquired: list[tuple[str, bytes, dict[str, Any], str | None]] = []
        try:
            for source, index in self._indexes:
                if source not in item:
                    continue
                if (previous is not None and source in previous
                        and index.normalized(previous[source]) == index.normalized(item[source])
                        and self._still_ours(source, index, item[source], owner_bytes)):
                    continue
                acquired.append((source, *self._acquire(source, index, item[source], owner)))
        except BaseException:
            self._abandon(acquired)  # nothing was written
            raise
        call = dict(kwargs)
        want_old = call.get("ReturnValues") == "ALL_OLD"
        call["ReturnValues"] = "ALL_OLD"
        self._step("item:write")
        try:
            response = self._request("put_item", key=stored, Item=stored, **call)
        except ClientError:
            self._abandon(acquired)  # DynamoDB answered with an error: nothing was written
            raise
        # Any other failure (a timeout, a reset connection) may come after the write landed:
        # the pending claims then stay, and their lease and the truth check settle them.
        lost = [source for source, cid, mine, _ in acquired if not self._promote(cid, mine)]
        old_stored = response.get("Attributes")
        if lost:
            self._roll_back(stored, old_stored)
            raise UniqueConstraintError(self.table_name, lost[0],
                                        describe_key(self.schema, owner))
        old: dict[str, Any] | None = None
        if old_stored:
            try:
                old = self._open(old_stored)
            except IntegrityError:
                if want_old:
                    raise
        replaced = old if old is not None else previous
        try:
            if replaced is not None:
                self._release_changed(replaced, item, owner)
        except BaseException:
            if old is not None:
                old.clear()  # a decrypted item the caller may not have asked for
            raise
        if want_old and old is not None:
            return old
        if old is not None:
            old.clear()
        return None

    def _abandon(self, acquired: list[tuple[str, bytes, dict[str, Any], str | None]]) -> None:
        """Give back claims taken for a write that did not happen, each on condition that it is
        still as we wrote it (another writer of the item may have joined it since): a new
        claim is deleted, a held one we joined is held again, a pending one we joined stays
        with the writer that created it."""
        for _source, cid, mine, give_back in acquired:
            if give_back == _NEW_CLAIM:
                self._conditional("claim:abandon", "delete_item", Key={"claim": cid},
                                  **_as_read(mine))
            elif give_back == HELD:
                self._update("claim:unjoin", cid, mine, HELD, None)

    def _roll_back(self, stored: Mapping[str, Any], old_stored: Mapping[str, Any] | None
                   ) -> None:
        """Undo our write, on condition that nobody has written the item since."""
        key = self.sealer.key_of(stored)
        unchanged = unchanged_condition(stored, self.schema.plain)
        self._step("item:rollback")
        try:
            if old_stored:
                self._request("put_item", key=key, Item=old_stored, **unchanged)
            else:
                self._request("delete_item", key=key, Key=key, **unchanged)
        except ClientError as e:
            if not _conditional_failed(e):
                raise
            raise DynasealError(
                f"a unique claim was lost during a slow write and the item has changed since, "
                f"so the write could not be rolled back (table {self.table_name!r}, key "
                f"{describe_key(self.schema, key)})"
            ) from None

    def _release_changed(self, old: Mapping[str, Any], new: Mapping[str, Any],
                         owner: Mapping[str, Any]) -> None:
        for source, index in self._indexes:
            if source not in old:
                continue
            if source in new and index.normalized(new[source]) == index.normalized(old[source]):
                continue
            self._release(source, index, old[source], owner)

    def delete(self, key: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        call = dict(kwargs)
        want_old = call.get("ReturnValues") == "ALL_OLD"
        call["ReturnValues"] = "ALL_OLD"
        self._step("item:delete")
        response = self._request("delete_item", key=key, Key=key, **call)
        old_stored = response.get("Attributes")
        if not old_stored:
            return None
        try:
            old = self._open(old_stored)
        except IntegrityError:
            if want_old:
                raise
            return None
        try:
            self._release_changed(old, {}, key)
        except BaseException:
            old.clear()  # a decrypted item the caller may not have asked for
            raise
        if want_old:
            return old
        old.clear()
        return None


def _backoff(attempt: int) -> None:
    """A short random pause after losing a race on a claim to another writer of the same
    item, so that many of them do not keep invalidating each other's conditions."""
    time.sleep(min(0.2, 0.004 * 2**attempt) * random.random())  # noqa: S311


def _normal_or_none(index: BlindIndex, value: Any) -> bytes | None:
    try:
        return index.normalized(value)
    except DynasealError:
        return None
