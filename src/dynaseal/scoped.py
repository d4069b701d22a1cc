"""Scoped views of a sealed table: the library half of an IDOR fix.

``users.scoped("owner", principal)`` is a view in which only items whose *signed* attribute
``owner`` equals ``principal`` exist. An item of another owner behaves exactly like a missing
one (``get_item`` gives None, ``update_item`` and ``delete_item`` raise
:class:`~dynaseal.ItemNotFoundError`, nothing is written), so an app that reads and writes only
through a view built from the authenticated principal cannot be walked into another user's
records by changing an id in a URL.

Why signed: the owner attribute is covered by the item signature, so whoever can write to the
table cannot move an item to another owner; the moved item fails with
:class:`~dynaseal.IntegrityError`. Every check is made on the *opened* (verified) item; the
owner condition sent to DynamoDB (a ``FilterExpression`` on reads, a ``ConditionExpression``
on writes) only saves work and guards writes. The attribute is signed plaintext, so DynamoDB can
evaluate ``#o = :v`` on it.

One consequence, by design: a read opens the item before comparing owners, so an item whose
stored owner was tampered with raises IntegrityError to anyone who reads it by key; tampering is
never silently turned into "not found". Listings (``scan``, ``find``, and ``query`` of the table
by a key other than the owner) also filter on the stored owner in DynamoDB, so a rewritten item
shows up (as IntegrityError) in the listing of the owner it now names, not in the previous
owner's. DynamoDB refuses such a filter on a key attribute, so a ``query`` of an index, or of a
table keyed by the owner, is filtered after opening only (its key condition usually names the
owner anyway).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, ConditionBase
from botocore.exceptions import ClientError

from .errors import ConfigError, DynasealError, InvalidItemError, ItemNotFoundError
from .sealer import describe_key

if TYPE_CHECKING:
    from .table import SealedTable

__all__ = ["ScopedTable"]

_MAX_DELETE_ATTEMPTS = 20
# placeholders for the conditions this view adds; a caller's own expressions may not use them
# (nor the table's own unchanged-item condition, which uses #a<n> and :v<n>)
_N_SCOPE, _V_SCOPE, _N_KEY = "#dsScope", ":dsScope", "#dsKey"


def _conditional_failed(e: ClientError) -> bool:
    return bool(e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def _same(stored: Any, value: Any) -> bool:
    """Exact equality for owner values: a string only equals a string, a number a number
    (never a bool), bytes only bytes."""
    if isinstance(value, str):
        return type(stored) is str and stored == value
    if isinstance(value, bytes):
        return isinstance(stored, bytes | bytearray) and bytes(stored) == value
    return (isinstance(stored, int | Decimal) and not isinstance(stored, bool)
            and stored == value)


def _with_condition(kwargs: Mapping[str, Any], param: str, expression: str,
                    names: Mapping[str, str], values: Mapping[str, Any],
                    condition: ConditionBase | None) -> dict[str, Any]:
    """``kwargs`` with our condition AND-ed to the caller's ``param`` (a string or, when we
    have ``condition`` in that form too, a boto3 condition object; absent: ours alone)."""
    out = dict(kwargs)
    theirs = out.get(param)
    if theirs is not None and not isinstance(theirs, str):
        if condition is None:
            raise TypeError(f"{param}: give this scoped operation a condition string")
        out[param] = theirs & condition  # boto3 builds both and names the placeholders
        return out
    out[param] = expression if theirs is None else f"({theirs}) AND ({expression})"
    for field, ours in (("ExpressionAttributeNames", names), ("ExpressionAttributeValues", values)):
        merged = dict(out.get(field) or {})
        if merged.keys() & ours.keys():
            raise TypeError(f"{param}: the placeholders {', '.join(sorted(ours))} are "
                            "reserved by dynaseal's scoped view")
        merged.update(ours)
        out[field] = merged
    return out


class ScopedTable:
    """A view of a :class:`~dynaseal.SealedTable` holding only the items whose signed
    ``attribute`` equals ``value``. Build it with ``SealedTable.scoped(attribute, value)``.

    Cheap to build (one per request is the intended use) and as thread-safe as its table. The
    methods take the same arguments as the table's and differ only in what they can see:

    - ``get_item``: None for a missing or foreign item.
    - ``put_item``: sets ``attribute`` to ``value`` (an item naming another value raises
      InvalidItemError); refuses to overwrite another owner's item with the same key (DynamoDB's
      ``ConditionalCheckFailedException``, nothing written).
    - ``update_item``, ``delete_item``: ItemNotFoundError for a missing or foreign item; nothing
      is written. ``update_item`` refuses to change or remove ``attribute``.
    - ``query``, ``scan``, ``find``, ``batch_get``: only this owner's items.
    """

    def __init__(self, table: SealedTable, attribute: str, value: Any) -> None:
        schema = table.schema
        if not isinstance(attribute, str) or not (
                attribute in schema.sign or attribute in schema.key_names):
            raise ConfigError(
                f"table {table.name!r}: a scope attribute must be signed (a key attribute or "
                f"one listed in the schema's sign); {attribute!r} is not, so anyone with write "
                "access to the table could move items between owners"
            )
        ok = (isinstance(value, str | bytes) and len(value) > 0) or (
            isinstance(value, int | Decimal) and not isinstance(value, bool))
        if not ok:
            raise InvalidItemError(
                f"table {table.name!r}: a scope value must be a non-empty string or bytes, or "
                "a number"
            )
        self._table = table
        self._attribute = attribute
        self._value = value
        self._is_key = attribute in schema.key_names
        self._names = {_N_SCOPE: attribute}
        self._values = {_V_SCOPE: value}

    def __repr__(self) -> str:  # never the value: it may identify a person
        return f"ScopedTable({self._table.name!r}, attribute={self._attribute!r})"

    @property
    def name(self) -> str:
        return self._table.name

    @property
    def attribute(self) -> str:
        return self._attribute

    @property
    def value(self) -> Any:
        return self._value

    @property
    def table(self) -> SealedTable:
        """The unscoped table (sees every owner's items)."""
        return self._table

    def owns(self, item: Mapping[str, Any]) -> bool:
        """Does an opened item belong to this view?"""
        return self._attribute in item and _same(item[self._attribute], self._value)

    # -- single items -----------------------------------------------------------------------

    def get_item(self, key: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        item = self._table.get_item(key, **kwargs)
        return item if item is not None and self.owns(item) else None

    def put_item(self, item: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        if self._attribute in item:
            if not _same(item[self._attribute], self._value):
                raise InvalidItemError(
                    f"table {self.name!r}: the item names another {self._attribute!r} than "
                    "this scoped view's"
                )
        else:
            item = {**item, self._attribute: self._value}
        if self._is_key:
            return self._table.put_item(item, **kwargs)  # the key itself holds the owner
        pk = self._table.schema.partition_key
        kw = _with_condition(
            kwargs, "ConditionExpression", f"attribute_not_exists({_N_KEY}) OR "
            f"{_N_SCOPE} = {_V_SCOPE}", {**self._names, _N_KEY: pk}, self._values,
            Attr(pk).not_exists() | Attr(self._attribute).eq(self._value))
        return self._table.put_item(item, **kw)

    def update_item(self, key: Mapping[str, Any], *, set: Mapping[str, Any] | None = None,
                    remove: Iterable[str] = ()) -> dict[str, Any]:
        changes = dict(set or {})
        removals = list(remove)
        if self._attribute in removals or (
                self._attribute in changes and not _same(changes[self._attribute], self._value)):
            raise InvalidItemError(
                f"table {self.name!r}: a scoped view cannot change or remove {self._attribute!r}"
            )
        return self._table.update_item(key, set=changes, remove=removals, _scope=self.owns)

    def delete_item(self, key: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """Delete one of this owner's items; ItemNotFoundError for a missing or foreign one.

        The item is read and verified first, then deleted on condition that it is unchanged
        since (its seal, and its plain attributes), so neither a concurrent change nor a
        tampered owner attribute can make it delete another owner's item. A caller's own
        ``ConditionExpression`` must be a string here.
        """
        table = self._table
        k = table._key(key)
        where = describe_key(table.schema, k)
        for _ in range(_MAX_DELETE_ATTEMPTS):
            stored = table._request("get_item", key=k, Key=k, ConsistentRead=True).get("Item")
            # the opened item is never bound to a name: a foreign one leaves no plaintext in
            # the traceback's frame locals
            if stored is None or not self.owns(table._open(stored)):
                raise ItemNotFoundError("delete_item", self.name, where)
            unchanged = table._unchanged(stored)
            kw = _with_condition(
                kwargs, "ConditionExpression",
                f"{unchanged['ConditionExpression']} AND {_N_SCOPE} = {_V_SCOPE}",
                {**unchanged["ExpressionAttributeNames"], **self._names},
                {**unchanged.get("ExpressionAttributeValues", {}), **self._values}, None)
            try:
                return table.delete_item(k, **kw)
            except ClientError as e:
                if not _conditional_failed(e):
                    raise
                if "ConditionExpression" in kwargs and self._still(k, stored):
                    raise  # the caller's own condition failed
        raise DynasealError(
            f"delete_item: gave up after {_MAX_DELETE_ATTEMPTS} conflicting writers "
            f"(table {self.name!r}, key {where})"
        )

    def _still(self, key: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
        """Is the item still exactly ``stored``?"""
        now = self._table._request("get_item", key=key, Key=key, ConsistentRead=True).get("Item")
        return bool(now == stored)

    # -- many items -------------------------------------------------------------------------

    def _filtered(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return _with_condition(kwargs, "FilterExpression", f"{_N_SCOPE} = {_V_SCOPE}",
                               self._names, self._values,
                               Attr(self._attribute).eq(self._value))

    def _mine(self, items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            if self.owns(item):
                yield item
            # a skipped (foreign) item must not sit in this frame's locals if the next page
            # raises (IntegrityError, a network error) and a traceback is kept or reported
            del item

    def query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        # DynamoDB refuses a FilterExpression on a key attribute of what is queried: the owner
        # is often the key of a GSI ("list my items"), so only a query of the table itself,
        # by another key than the owner, is filtered in DynamoDB too
        if "IndexName" in kwargs or self._is_key:
            return self._mine(self._table.query(**kwargs))
        return self._mine(self._table.query(**self._filtered(kwargs)))

    def scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self._mine(self._table.scan(**self._filtered(kwargs)))

    def find(self, source: str, value: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self._mine(self._table.find(source, value, **self._filtered(kwargs)))

    def batch_get(self, keys: Iterable[Mapping[str, Any]], *,
                  consistent_read: bool = False) -> list[dict[str, Any]]:
        return list(self._mine(self._table.batch_get(keys, consistent_read=consistent_read)))

