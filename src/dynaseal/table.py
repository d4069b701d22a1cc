"""SealedTable: a boto3 Table that seals on the way in and opens on the way out.

Every DynamoDB request goes through :meth:`SealedTable._request`, the one seam where logging
happens; it logs the operation, the table and at most the primary key, never an item.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key
from boto3.dynamodb.table import BatchWriter
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from .conditions import unchanged_condition
from .errors import DynasealError, InvalidItemError, ItemNotFoundError
from .keyrings.interface import Keyring
from .schema import HEADER_ATTRIBUTE, Schema
from .scoped import ScopedTable
from .sealer import ItemSealer, describe_key
from .tables import claims_table_name
from .unique import UniqueGuard

if TYPE_CHECKING:
    from .readers import MigrationReader

__all__ = ["SealedBatchWriter", "SealedTable"]

log = logging.getLogger("dynaseal")

_PARTIAL_READ_ARGS = frozenset({"ProjectionExpression", "AttributesToGet"})
_BATCH_GET_LIMIT = 100
_MAX_BATCH_ATTEMPTS = 8
_MAX_UPDATE_ATTEMPTS = 50
# the conversions boto3's resource layer applies, applied by hand on the wire-client path
_to_wire = TypeSerializer().serialize
_from_wire = TypeDeserializer().deserialize


def _check_wire_client(wire: Any, resource_client: Any) -> None:
    """Refuse a wire client that is not a plain DynamoDB client of the table's own endpoint
    and region: reads through it must reach the table the seal names, and a resource's
    client would convert the already converted key a second time."""
    meta = getattr(wire, "meta", None)
    service = getattr(getattr(meta, "service_model", None), "service_name", None)
    if service != "dynamodb":
        raise TypeError("wire_client: must be a boto3 DynamoDB client")
    if wire is resource_client or getattr(meta, "events", None) is resource_client.meta.events:
        raise TypeError("wire_client: must be a low-level client (session.client), not the "
                        "table resource's own client")
    for attribute in ("endpoint_url", "region_name"):
        if getattr(meta, attribute) != getattr(resource_client.meta, attribute):
            raise TypeError(f"wire_client: its {attribute} differs from the table's")


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.01 * (2**attempt)) * (0.5 + random.random()))  # noqa: S311


class SealedTable:
    """A DynamoDB table whose items are sealed by dynaseal.

    ``table`` is a boto3 ``Table`` resource; its name is bound into every item's seal, so an
    item copied to another table does not open there.

    Thread-safe: one SealedTable may be shared by every thread of a process (a gthread web
    worker, a thread pool). boto3 documents resources as not thread-safe and clients as
    thread-safe, so every request goes through the resource's client (``table.meta.client``,
    which still converts Python values to and from DynamoDB's wire format), never through the
    ``Table`` resource itself, and everything built lazily is built here, up front. The
    keyring must be thread-safe too (the keyrings dynaseal ships are).

    ``wire_client``: optional, a low-level DynamoDB client (``session.client("dynamodb")``,
    not a resource's client) for the same endpoint and region as ``table`` (checked) and the
    same credentials (which cannot be checked);
    :meth:`dynaseal.Config.sealed_table` passes one. ``get_item`` then goes through it and
    converts the stored item itself: boto3's resource layer walks every attribute of every
    response against the service model before converting it, which costs a sealed read about
    as much as verifying and decrypting the item does. The result is the same either way.
    """

    def __init__(self, table: Any, *, schema: Schema, keyring: Keyring,
                 migrating_from: MigrationReader | None = None,
                 wire_client: Any = None) -> None:
        self._table = table
        self.migrating_from = migrating_from
        """During a migration (``dynaseal migrate``): reads items not yet sealed, so the app
        reads both forms (writes are always sealed). None: an unsealed item is an
        IntegrityError. See :mod:`dynaseal.readers`."""
        self._client: Any = table.meta.client
        self.name: str = table.name
        if wire_client is not None:
            _check_wire_client(wire_client, self._client)
        self._wire: Any = wire_client
        self.schema = schema
        self.sealer = ItemSealer(self.name, schema, keyring)
        self._unique: Any = None
        if any(ix.unique for ix in schema.blind_indexes.values()):
            self._unique = UniqueGuard(
                self.sealer, self._request,
                functools.partial(self._request, target=self._client,
                                  TableName=claims_table_name(self.name)),
                open_item=self._open)

    def __repr__(self) -> str:
        return f"SealedTable({self.name!r}, keyring={self.sealer.keyring!r})"

    @property
    def table(self) -> Any:
        """The underlying boto3 Table resource (it reads and writes sealed items as stored)."""
        return self._table

    def scoped(self, attribute: str, value: Any) -> ScopedTable:
        """A view that sees only items whose signed ``attribute`` equals ``value``.

        The library half of an IDOR fix: build one per request from the authenticated
        principal (``users.scoped("owner", current_user_id)``). See :class:`ScopedTable`.
        """
        return ScopedTable(self, attribute, value)

    # -- the seam ---------------------------------------------------------------------------

    def _request(self, operation: str, key: Mapping[str, Any] | None = None,
                 target: Any = None, **kwargs: Any) -> Any:
        debug = log.isEnabledFor(logging.DEBUG)
        where = describe_key(self.schema, key) if debug and key is not None else ""
        if debug:
            log.debug("dynamodb %s table=%s %s", operation, self.name, where)
        if target is None:  # this table, through the thread-safe client
            target = self._client
            kwargs["TableName"] = self.name
        method: Callable[..., Any] = getattr(target, operation)
        try:
            return method(**kwargs)
        except ClientError as e:
            if debug:
                code = e.response.get("Error", {}).get("Code", "?")
                log.debug("dynamodb %s table=%s %s failed: %s", operation, self.name, where,
                          code)
            raise

    # -- single items -----------------------------------------------------------------------

    def put_item(self, item: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """Seal and write an item. With ``ReturnValues="ALL_OLD"`` returns the opened old item."""
        _refuse(kwargs, {"Item"}, "put_item")
        stored = self.sealer.seal(item)
        if self._unique is not None:
            return self._unique.put(item, stored, kwargs)  # type: ignore[no-any-return]
        return self._put_stored(stored, kwargs)

    def _put_stored(self, stored: Mapping[str, Any], kwargs: Mapping[str, Any]
                    ) -> dict[str, Any] | None:
        response = self._request("put_item", key=stored, Item=stored, **kwargs)
        old = response.get("Attributes")
        return self._open(old) if old else None

    def get_item(self, key: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """Read, verify and decrypt one item; None if it does not exist."""
        # the table is this one, on either path: a TableName of the caller's is refused
        _refuse(kwargs, {"Key", "TableName", "target"} | _PARTIAL_READ_ARGS, "get_item")
        k = self._key(key)
        if self._wire is None:
            stored = self._request("get_item", key=k, Key=k, **kwargs).get("Item")
            return None if stored is None else self._open(stored)
        wire = self._request("get_item", key=k, target=self._wire, TableName=self.name,
                             Key={name: _to_wire(value) for name, value in k.items()},
                             **kwargs).get("Item")
        if wire is None:
            return None
        return self._open({name: _from_wire(value) for name, value in wire.items()})

    def delete_item(self, key: Mapping[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        """Delete one item. With ``ReturnValues="ALL_OLD"`` returns the opened old item."""
        _refuse(kwargs, {"Key"}, "delete_item")
        k = self._key(key)
        if self._unique is not None:
            return self._unique.delete(k, kwargs)  # type: ignore[no-any-return]
        response = self._request("delete_item", key=k, Key=k, **kwargs)
        old = response.get("Attributes")
        return self._open(old) if old else None

    def _open(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        if self.migrating_from is not None and HEADER_ATTRIBUTE not in stored:
            return self.migrating_from.read(stored)
        return self.sealer.open(stored)

    def _unchanged(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The condition of a write that replaces ``stored``: its seal, which changes at
        every write, is still the one read (an unsealed item: its reader says how)."""
        if self.migrating_from is not None and HEADER_ATTRIBUTE not in stored:
            return self.migrating_from.unchanged(stored)
        return unchanged_condition(stored, self.schema.plain)

    def _key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(key, Mapping):
            raise InvalidItemError(f"table {self.name!r}: a key must be a dict")
        extra = set(key) - set(self.schema.key_names)
        if extra:
            raise InvalidItemError(
                f"table {self.name!r}: a key holds only {', '.join(self.schema.key_names)}"
            )
        return self.sealer.key_of(key)

    # -- many items -------------------------------------------------------------------------

    def query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Query and yield opened items, following ``LastEvaluatedKey`` across pages."""
        return self._paginate("query", kwargs)

    def scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Scan and yield opened items, following ``LastEvaluatedKey`` across pages."""
        return self._paginate("scan", kwargs)

    def _paginate(self, operation: str, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        _refuse(kwargs, _PARTIAL_READ_ARGS, operation)
        if kwargs.get("Select", "ALL_ATTRIBUTES") not in ("ALL_ATTRIBUTES",
                                                          "ALL_PROJECTED_ATTRIBUTES"):
            raise TypeError(f"{operation}: only whole items can be verified; drop Select")
        return self._pages(operation, dict(kwargs))

    def _pages(self, operation: str, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            page = self._request(operation, **kwargs)
            for stored in page.get("Items", []):
                yield self._open(stored)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def batch_get(self, keys: Iterable[Mapping[str, Any]], *,
                  consistent_read: bool = False) -> list[dict[str, Any]]:
        """Read many items (100 per request, unprocessed keys retried); request order kept."""
        wanted: dict[bytes, dict[str, Any]] = {}
        for key in keys:
            k = self._key(key)
            wanted.setdefault(self.sealer._key_bytes(k), k)
        found: dict[bytes, dict[str, Any]] = {}
        try:
            self._batch_get_into(found, list(wanted.values()), consistent_read)
        except BaseException:
            for item in found.values():  # opened, never returned: not left in frame locals
                item.clear()
            raise
        return [found[kb] for kb in wanted if kb in found]

    def _batch_get_into(self, found: dict[bytes, dict[str, Any]],
                        pending: list[dict[str, Any]], consistent_read: bool) -> None:
        client = self._client
        while pending:
            chunk, pending = pending[:_BATCH_GET_LIMIT], pending[_BATCH_GET_LIMIT:]
            request: dict[str, Any] = {
                self.name: {
                    "Keys": chunk,
                    "ConsistentRead": consistent_read,
                }
            }
            for attempt in range(_MAX_BATCH_ATTEMPTS):
                response = self._request("batch_get_item", target=client, RequestItems=request)
                for stored in response.get("Responses", {}).get(self.name, []):
                    item = self._open(stored)
                    found[self.sealer._key_bytes(stored)] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(attempt)
            else:
                raise DynasealError(
                    f"table {self.name!r}: batch_get gave up with keys still unprocessed"
                )

    def batch_writer(self) -> SealedBatchWriter:
        """Buffered writes (25 per request, retried); use as a context manager."""
        if self._unique is not None:
            raise DynasealError(
                f"table {self.name!r}: batch writes cannot enforce unique blind indexes; "
                "use put_item"
            )
        return SealedBatchWriter(self)

    # -- blind-index lookups and safe updates ------------------------------------------------

    def find(self, source: str, value: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Items whose encrypted ``source`` attribute equals ``value`` after normalisation.

        Queries the GSI named after the index attribute, opens every candidate and drops the
        false positives that index truncation lets through.
        """
        index = self.schema.blind_indexes.get(source)
        if index is None:
            raise InvalidItemError(f"table {self.name!r}: no blind index on {source!r}")
        _refuse(kwargs, {"IndexName", "KeyConditionExpression"} | _PARTIAL_READ_ARGS, "find")
        wanted = index.normalized(value)
        digest = index.compute(self.sealer._index_key(source), value)
        pages = self._pages("query", {
            "IndexName": index.attribute,
            "KeyConditionExpression": Key(index.attribute).eq(digest),
            **kwargs,
        })
        return _matching(pages, source, index, wanted)

    def update_item(
        self,
        key: Mapping[str, Any],
        *,
        set: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        _scope: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Change attributes of a sealed item without losing a concurrent writer's change.

        Reads and opens the item, applies the change, reseals it and writes it on condition that
        everything the write replaces is still as read: its seal (which changes at every write)
        and every plain attribute, which the seal does not cover (a concurrent ``SET ttl`` or
        ``ADD counter``); on conflict it starts over. Raises ``ItemNotFoundError`` if the item
        does not exist; returns the new item.
        (``_scope`` is for :class:`~dynaseal.ScopedTable`: an opened item it refuses counts as
        missing; the seal condition keeps that check true until the write.)
        """
        changes = dict(set or {})
        removals = list(remove)
        k = self._key(key)
        touched = changes.keys() | removals
        if touched & {*self.schema.key_names}:
            raise InvalidItemError(f"table {self.name!r}: key attributes cannot be updated")
        reserved = {HEADER_ATTRIBUTE} | {ix.attribute for ix in self.schema.blind_indexes.values()}
        if touched & reserved:
            raise InvalidItemError(f"table {self.name!r}: reserved attribute in update")
        where = describe_key(self.schema, k)
        for attempt in range(_MAX_UPDATE_ATTEMPTS):
            stored = self._request("get_item", key=k, Key=k, ConsistentRead=True).get("Item")
            if stored is None:
                raise ItemNotFoundError("update_item", self.name, where)
            previous: dict[str, Any] = {}
            item: dict[str, Any] = {}
            try:
                previous = self._open(stored)
                if _scope is not None and not _scope(previous):
                    raise ItemNotFoundError("update_item", self.name, where)
                item = dict(previous)
                for name in removals:
                    item.pop(name, None)
                item.update(changes)
                new_stored = self.sealer.seal(item)
                condition = self._unchanged(stored)
                if self._unique is not None:
                    # an item still in its pre-migration form holds no claims yet
                    self._unique.put(item, new_stored, condition, previous=previous
                                     if HEADER_ATTRIBUTE in stored else None)
                else:
                    self._request("put_item", key=k, Item=new_stored, **condition)
            except BaseException as e:
                # whatever failed, the decrypted item (attributes the caller never asked for,
                # another owner's item refused by a scope) is gone from every frame's locals
                previous.clear()
                item.clear()
                if not (isinstance(e, ClientError) and e.response.get("Error", {}).get("Code")
                        == "ConditionalCheckFailedException"):
                    raise
                log.debug("update_item table=%s %s: conflict, retrying", self.name, where)
                _backoff(min(attempt, 6))
                continue
            return item
        raise DynasealError(
            f"update_item: gave up after {_MAX_UPDATE_ATTEMPTS} conflicting writers "
            f"(table {self.name!r}, key {where})"
        )


def _matching(pages: Iterator[dict[str, Any]], source: str, index: Any, wanted: bytes
              ) -> Iterator[dict[str, Any]]:
    """The candidates that really hold the value. A false positive is another value's item,
    never the caller's to see: it is emptied at once, so that no later failure (the next
    page's request) finds it in this generator's locals."""
    for item in pages:
        if source in item and _normal_or_none(index, item[source]) == wanted:
            yield item
        else:
            item.clear()


def _normal_or_none(index: Any, value: Any) -> bytes | None:
    try:
        return index.normalized(value)  # type: ignore[no-any-return]
    except InvalidItemError:
        return None


def _refuse(kwargs: Mapping[str, Any], names: Iterable[str], operation: str) -> None:
    bad = sorted(set(kwargs) & set(names))
    if bad:
        raise TypeError(f"{operation}: dynaseal does not accept {', '.join(bad)} here")


class SealedBatchWriter:
    """Seals items into boto3's batch writer, which sends 25 per request and retries.

    Items wait here until 25 are ready, so an exception inside the ``with`` block (a bad item,
    say) drops the batch not yet sent instead of writing it. Batches already sent stay
    written: DynamoDB batch writes are not transactions.
    """

    _BATCH = 25

    def __init__(self, table: SealedTable) -> None:
        self._table = table
        self._inner: Any = None
        self._pending: dict[bytes, tuple[str, dict[str, Any]]] = {}

    def __enter__(self) -> SealedBatchWriter:
        log.debug("dynamodb batch_write_item table=%s", self._table.name)
        # boto3's BatchWriter over the table's thread-safe client, not the resource's helper
        self._inner = BatchWriter(self._table.name, self._table._client).__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._hand_over()
        else:
            self._pending.clear()
        self._inner.__exit__(exc_type, exc, tb)
        self._inner = None

    def put_item(self, item: Mapping[str, Any]) -> None:
        stored = self._table.sealer.seal(item)
        self._add("put", stored)

    def delete_item(self, key: Mapping[str, Any]) -> None:
        self._add("delete", self._table._key(key))

    def _add(self, operation: str, value: dict[str, Any]) -> None:
        if self._inner is None:
            raise DynasealError("use the batch writer inside a 'with' block")
        # the last request for a key wins, as one batch may not name a key twice
        kb = self._table.sealer._key_bytes(value)
        self._pending.pop(kb, None)
        self._pending[kb] = (operation, value)
        if len(self._pending) >= self._BATCH:
            self._hand_over()

    def _hand_over(self) -> None:
        for operation, value in self._pending.values():
            if operation == "put":
                self._inner.put_item(Item=value)
            else:
                self._inner.delete_item(Key=value)
        self._pending.clear()
