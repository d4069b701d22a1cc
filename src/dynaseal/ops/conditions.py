"""The condition every operations write carries: the item is still the one that was read.

A sealed item changes its ``_ds`` header at every write (fresh data key, fresh signature), so
"unchanged" is ``_ds`` equal to the header read, plus every plain attribute (which the
signature does not cover) equal or still absent. An unsealed item (plaintext, legacy SDK,
Fernet fields) has no such attribute, so every attribute it holds must still be equal and it
must still have no ``_ds``. The expression is a flat string of ``AND`` clauses with
placeholders: attribute names may hold dots or dashes, and nested ``Attr(...) & ...`` chains
are slow to parse (dynalite) and limited in depth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..schema import HEADER_ATTRIBUTE

__all__ = ["unchanged_condition"]


def unchanged_condition(stored: Mapping[str, Any], plain: Iterable[str] = ()
                        ) -> dict[str, Any]:
    """``put_item`` keyword arguments that make the write conditional on ``stored`` unchanged.

    ``plain`` names the attributes stored outside the seal (the schema's plain attributes);
    they are compared too, so a concurrent change to one of them is not overwritten.
    """
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    clauses: list[str] = []

    def name(attr: str) -> str:
        placeholder = f"#a{len(names)}"
        names[placeholder] = attr
        return placeholder

    if HEADER_ATTRIBUTE in stored:
        compared: Iterable[str] = [HEADER_ATTRIBUTE, *sorted(set(plain))]
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
