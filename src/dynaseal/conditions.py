"""The condition of a read-modify-write: the item is still the one that was read.

``put_item`` replaces a whole item, so a rewrite must be conditional on every attribute it
replaces. A sealed item changes its ``_ds`` header at every write (a fresh data key, a fresh
signature), which covers every sealed attribute; the attributes the schema calls plain are
outside the signature, so each is compared on its own (equal, or still absent), and a
concurrent ``SET ttl`` or ``ADD counter`` fails the write instead of being overwritten. An
unsealed item (no ``_ds``) has every attribute compared and must still have no ``_ds``.

The expression is a flat string of ``AND`` clauses with placeholders: attribute names may hold
dots or dashes, and nested ``Attr(...) & ...`` chains are slow to parse (dynalite) and limited
in depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .schema import HEADER_ATTRIBUTE

__all__ = ["unchanged_condition"]


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
    for attr in compared:
        n = name(attr)
        if attr in stored:
            v = f":v{len(values)}"
            values[v] = stored[attr]
            clauses.append(f"{n} = {v}")
        else:
            clauses.append(f"attribute_not_exists({n})")
    out: dict[str, Any] = {"ConditionExpression": " AND ".join(clauses),
                           "ExpressionAttributeNames": names}
    if values:
        out["ExpressionAttributeValues"] = values
    return out
