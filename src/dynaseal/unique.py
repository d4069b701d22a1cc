"""Unique blind indexes without DynamoDB transactions.

A value is reserved by a *claim* item in a companion table (``<table>.dynaseal-claims``), keyed
by a full-length HMAC of the normalised value under a key derived for that table and attribute.
Conditional writes on the claim decide races: of two writers of one value exactly one creates
the claim. A claim is ``pending`` (with a lease) while its owner writes the item, then ``held``.

Crashes never block a value forever, because a claim is only trusted as long as the truth agrees:
a writer that meets another owner's held claim, or a pending one whose lease ran out, reads that
owner's item, and if the item does not hold the value the claim is stale and is taken over with a
write conditioned on the claim's token. The truth check fails closed: an owner item this process
cannot open counts as holding the value. A write that outlives its lease finds its claim taken
over when it tries to mark it held; it then rolls its item back (conditioned on its own seal)
and raises UniqueConstraintError, so the writer that took the claim keeps the value.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from .blind_index import BlindIndex
from .errors import DynasealError, IntegrityError, UniqueConstraintError
from .schema import HEADER_ATTRIBUTE
from .sealer import describe_key
from .tables import claims_table_name

if TYPE_CHECKING:
    from .table import SealedTable

__all__ = ["UniqueGuard"]

log = logging.getLogger("dynaseal")

_CLAIM_LABEL = b"dynaseal/v1/claim"
_MAX_ROUNDS = 10
PENDING = "pending"
HELD = "held"


def _conditional_failed(e: ClientError) -> bool:
    return bool(e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


class UniqueGuard:
    """Enforces the unique blind indexes of one SealedTable."""

    def __init__(self, table: SealedTable, lease_seconds: float = 30.0) -> None:
        self._table = table
        self._client = table.table.meta.client
        self.claims_table = claims_table_name(table.name)
        self.lease_seconds = lease_seconds
        self._indexes = [(src, ix) for src, ix in table.schema.blind_indexes.items() if ix.unique]
        self._keys: dict[str, bytes] = {}

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
            key = self._table.sealer.keyring.index_key(self._table.name, "\x00claim\x00" + source)
            self._keys[source] = key
        return key

    def _call(self, operation: str, **kwargs: Any) -> Any:
        # The resource's client (de)serialises resource-layer values itself.
        return self._table._request(operation, target=self._client,
                                    TableName=self.claims_table, **kwargs)

    def _get(self, cid: bytes) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._call("get_item", Key={"claim": cid},
                                                 ConsistentRead=True).get("Item")
        return item

    def _write(self, cid: bytes, owner: Mapping[str, Any], token: bytes,
               expected_token: bytes | None) -> bool:
        lease_until = int((time.time() + self.lease_seconds) * 1000)
        item = {
            "claim": cid,
            "owner": dict(owner),
            "token": token,
            "state": PENDING,
            "lease_until": lease_until,
        }
        if expected_token is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(claim)"}
        else:
            condition = {"ConditionExpression": "#t = :t",
                         "ExpressionAttributeNames": {"#t": "token"},
                         "ExpressionAttributeValues": {":t": expected_token}}
        try:
            self._call("put_item", Item=item, **condition)
        except ClientError as e:
            if _conditional_failed(e):
                return False
            raise
        return True

    def _promote(self, cid: bytes, token: bytes) -> bool:
        """Mark a claim held; False if it is no longer ours (taken over after its lease)."""
        try:
            self._call("update_item", Key={"claim": cid},
                       UpdateExpression="SET #s = :held REMOVE lease_until",
                       ConditionExpression="#t = :t",
                       ExpressionAttributeNames={"#s": "state", "#t": "token"},
                       ExpressionAttributeValues={":held": HELD, ":t": token})
        except ClientError as e:
            if not _conditional_failed(e):
                raise
            return False
        return True

    def _delete(self, cid: bytes, token: bytes) -> None:
        try:
            self._call("delete_item", Key={"claim": cid}, ConditionExpression="#t = :t",
                       ExpressionAttributeNames={"#t": "token"},
                       ExpressionAttributeValues={":t": token})
        except ClientError as e:
            if not _conditional_failed(e):
                raise

    def _live(self, claim: Mapping[str, Any]) -> bool:
        lease = claim.get("lease_until")
        return (claim.get("state") == PENDING and isinstance(lease, Decimal)
                and lease > Decimal(int(time.time() * 1000)))

    def _same_owner(self, claim: Mapping[str, Any], owner_bytes: bytes) -> bool:
        owner = claim.get("owner")
        if not isinstance(owner, dict):
            return False
        try:
            return self._table.sealer._key_bytes(owner) == owner_bytes
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
            key = self._table.sealer.key_of(owner)
        except DynasealError:
            return False
        try:
            stored = self._table._request("get_item", key=key, Key=key,
                                          ConsistentRead=True).get("Item")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ValidationException":
                return False  # the owner key does not fit the table: no item can hold it
            raise
        if stored is None:
            return False
        try:
            item = self._table.sealer.open(stored)
        except IntegrityError:
            log.warning("dynaseal: the holder of a %r claim cannot be opened here; treating "
                        "the value as held (table %s)", source, self._table.name)
            return True
        if source not in item:
            return False
        try:
            return index.normalized(item[source]) == index.normalized(value)
        except DynasealError:
            return False

    def _acquire(self, source: str, index: BlindIndex, value: Any,
                 owner: Mapping[str, Any]) -> tuple[bytes, bytes, bool]:
        """Reserve ``value`` for ``owner``: (claim id, token, whether the claim is new to us)."""
        cid = self.claim_id(source, index, value)
        token = secrets.token_bytes(16)
        if self._write(cid, owner, token, None):
            return cid, token, True
        owner_bytes = self._table.sealer._key_bytes(owner)
        where = describe_key(self._table.schema, owner)
        for _ in range(_MAX_ROUNDS):
            claim = self._get(cid)
            if claim is None:
                if self._write(cid, owner, token, None):
                    return cid, token, True
                continue
            old_token = bytes(claim["token"]) if "token" in claim else b""
            if self._same_owner(claim, owner_bytes):
                if self._write(cid, owner, token, old_token):
                    return cid, token, False
                continue
            if self._live(claim):
                raise UniqueConstraintError(self._table.name, source, where)
            if self._owner_holds(claim, source, index, value):
                if claim.get("state") == PENDING:
                    self._promote(cid, old_token)
                raise UniqueConstraintError(self._table.name, source, where)
            log.info("dynaseal: taking over a stale %r claim (table %s)", source,
                     self._table.name)
            if self._write(cid, owner, token, old_token):
                return cid, token, True
        raise DynasealError(
            f"unique index {source!r}: claim still contended after {_MAX_ROUNDS} rounds "
            f"(table {self._table.name!r}, key {where})"
        )

    def _release(self, source: str, index: BlindIndex, value: Any,
                 owner: Mapping[str, Any]) -> None:
        """Drop our claim on a value we no longer hold, unless the truth says otherwise."""
        cid = self.claim_id(source, index, value)
        claim = self._get(cid)
        if claim is None or not self._same_owner(claim, self._table.sealer._key_bytes(owner)):
            return
        if self._live(claim) or self._owner_holds(claim, source, index, value):
            return
        self._delete(cid, bytes(claim["token"]))

    # -- the operations SealedTable delegates -----------------------------------------------

    def put(self, item: Mapping[str, Any], stored: Mapping[str, Any], kwargs: Mapping[str, Any],
            previous: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Claim the item's unique values, write it, then settle the claims.

        If a claim was taken over while the write was under way (the write outlived the
        lease), the write is rolled back and the value is left to the writer that took it.
        """
        owner = self._table.sealer.key_of(item)
        acquired: list[tuple[str, bytes, bytes, bool]] = []
        try:
            for source, index in self._indexes:
                if source not in item:
                    continue
                if (previous is not None and source in previous
                        and index.normalized(previous[source]) == index.normalized(item[source])):
                    continue  # unchanged, and the write is conditional on that previous item
                acquired.append((source, *self._acquire(source, index, item[source], owner)))
        except BaseException:
            self._abandon(acquired)  # nothing was written
            raise
        call = dict(kwargs)
        want_old = call.get("ReturnValues") == "ALL_OLD"
        call["ReturnValues"] = "ALL_OLD"
        try:
            response = self._table._request("put_item", key=stored, Item=stored, **call)
        except ClientError:
            self._abandon(acquired)  # DynamoDB answered with an error: nothing was written
            raise
        # Any other failure (a timeout, a reset connection) may come after the write landed:
        # the pending claims then stay, and their lease and the truth check settle them.
        lost = [source for source, cid, token, _ in acquired if not self._promote(cid, token)]
        old_stored = response.get("Attributes")
        if lost:
            self._roll_back(stored, old_stored)
            raise UniqueConstraintError(self._table.name, lost[0],
                                        describe_key(self._table.schema, owner))
        old = previous
        if old_stored:
            try:
                old = self._table.sealer.open(old_stored)
            except IntegrityError:
                if want_old:
                    raise
                old = None
        if old is not None:
            self._release_changed(old, item, owner)
        return dict(old) if want_old and old_stored and old is not None else None

    def _abandon(self, acquired: list[tuple[str, bytes, bytes, bool]]) -> None:
        """Give back claims taken for a write that did not happen (re-claims stay pending)."""
        for _source, cid, token, fresh in acquired:
            if fresh:
                self._delete(cid, token)

    def _roll_back(self, stored: Mapping[str, Any], old_stored: Mapping[str, Any] | None
                   ) -> None:
        """Undo our write, on condition that nobody has written the item since."""
        key = self._table.sealer.key_of(stored)
        unchanged = Attr(HEADER_ATTRIBUTE).eq(stored[HEADER_ATTRIBUTE])
        try:
            if old_stored:
                self._table._request("put_item", key=key, Item=old_stored,
                                     ConditionExpression=unchanged)
            else:
                self._table._request("delete_item", key=key, Key=key,
                                     ConditionExpression=unchanged)
        except ClientError as e:
            if not _conditional_failed(e):
                raise
            raise DynasealError(
                f"a unique claim was lost during a slow write and the item has changed since, "
                f"so the write could not be rolled back (table {self._table.name!r}, key "
                f"{describe_key(self._table.schema, key)})"
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
        response = self._table._request("delete_item", key=key, Key=key, **call)
        old_stored = response.get("Attributes")
        if not old_stored:
            return None
        try:
            old = self._table.sealer.open(old_stored)
        except IntegrityError:
            if want_old:
                raise
            return None
        self._release_changed(old, {}, key)
        return old if want_old else None


