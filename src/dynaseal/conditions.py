"""The condition of a read-modify-write: the item is still the one that was read.

``put_item`` replaces a whole item, so a rewrite must be conditional on every attribute it
replaces. A sealed item changes its ``_ds`` header at every write (a fresh data key, a fresh
signature), which covers every sealed attribute; the attributes the schema calls plain are
outside the signature, so each is compared on its own (equal, or still absent), and a
concurrent ``SET ttl`` or ``ADD counter`` fails the write instead of being overwritten. An
unsealed item (no ``_ds``) has every attribute compared and must still have no ``_ds``.

The expression is a flat string of ``AND`` clauses with placeholders: attribute names may hold
dots or dashes, and nested ``Attr(...) & ...`` chains are slow to parse (dynalite) and limited
in depth. A map or list is compared element by element (its type, its size, then each entry
through a document path): DynamoDB compares them whole, but dynalite, the local stack, does not
(it compares them by reference), and a condition that never holds would make every update
fail. A map or list too large for that (over ``_MAX_CLAUSES`` clauses) is compared whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .schema import HEADER_ATTRIBUTE

__all__ = ["unchanged_condition"]

_MAX_CLAUSES = 150


def unchanged_condition(stored: Mapping[str, Any], plain: Iterable[str] = ()
                        ) -> dict[str, Any]:
    """Keyword arguments (``ConditionExpression`` and its names and values) that make a write
    conditional on ``stored``, as read, being unchanged. ``plain`` names the schema's plain
    attributes: each is compared whether ``stored`` holds it or not."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    clauses: list[str] = []

    def name(attr: str) -> str:
        placeholder = f"#a{len(names)}"
        names[placeholder] = attr
        return placeholder

    compared: Iterable[str]
    if HEADER_ATTRIBUTE in stored:
        compared = [HEADER_ATTRIBUTE, *sorted(set(plain) - {HEADER_ATTRIBUTE})]
    else:
        clauses.append(f"attribute_not_exists({name(HEADER_ATTRIBUTE)})")
        compared = sorted(stored)
    def value(v: Any) -> str:
        placeholder = f":v{len(values)}"
        values[placeholder] = v
        return placeholder

    def equal(path: str, v: Any, out: list[str]) -> None:
        if isinstance(v, Mapping | list):
            out.append(f"attribute_type({path}, {value('M' if isinstance(v, Mapping) else 'L')})")
            out.append(f"size({path}) = {value(len(v))}")
            entries = v.items() if isinstance(v, Mapping) else enumerate(v)
            for k, item in entries:
                equal(f"{path}.{name(k)}" if isinstance(k, str) else f"{path}[{k}]", item, out)
        else:
            out.append(f"{path} = {value(v)}")

    for attr in compared:
        n = name(attr)
        if attr not in stored:
            clauses.append(f"attribute_not_exists({n})")
            continue
        v = stored[attr]
        if isinstance(v, Mapping | list):
            marks = (len(names), len(values))
            nested: list[str] = []
            equal(n, v, nested)
            if len(nested) <= _MAX_CLAUSES:
                clauses += nested
                continue
            for placeholder in list(names)[marks[0]:]:  # too large: compared whole instead
                del names[placeholder]
            for placeholder in list(values)[marks[1]:]:
                del values[placeholder]
        clauses.append(f"{n} = {value(v)}")
    out: dict[str, Any] = {"ConditionExpression": " AND ".join(clauses),
                           "ExpressionAttributeNames": names}
    if values:
        out["ExpressionAttributeValues"] = values
    return out
