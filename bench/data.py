"""The items the benchmarks work on: deterministic, realistic user records and a large blob."""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

TABLE_NAME = "users"
PARTITION_KEY = "user_id"
SIGNED = ("created_at",)
SENSITIVE = ("email", "ssn", "name", "address")
"""The encrypted attributes of the reference user item."""
CREATED_AT = "2026-11-28T12:00:00Z"
BLOB_BYTES = 200 * 1024

_FIRST = ("Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Margaret",
          "Dennis", "Frances", "Tim", "Radia", "Ken", "Hedy", "John", "Sophie")
_LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov", "Knuth", "Hamilton",
         "Ritchie", "Allen", "Berners-Lee", "Perlman", "Thompson", "Lamarr", "Backus", "Wilson")
_STREETS = ("Maple Avenue", "Harbour Road", "Church Street", "Elm Drive", "Station Road",
            "Mill Lane", "Park Crescent", "Kings Way")
_CITIES = (("Springfield", "IL", "62701"), ("Portland", "OR", "97205"),
           ("Cambridge", "MA", "02139"), ("Austin", "TX", "78701"),
           ("Madison", "WI", "53703"), ("Boulder", "CO", "80302"))


def user_item(rng: random.Random) -> dict[str, Any]:
    """One reference user: key and ``created_at`` stay readable, four PII strings are secret."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, state, zip_code = rng.choice(_CITIES)
    return {
        "user_id": f"u-{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "created_at": CREATED_AT,
        "email": f"{first}.{last}{rng.randrange(10_000)}@example.com".lower(),
        "ssn": f"{rng.randrange(100, 900):03d}-{rng.randrange(1, 100):02d}-"
               f"{rng.randrange(1, 10_000):04d}",
        "name": f"{first} {last}",
        "address": f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)}, "
                   f"{city}, {state} {zip_code}",
    }


def users(n: int, seed: int = 2026) -> list[dict[str, Any]]:
    """``n`` distinct reference users, the same ones on every run."""
    rng = random.Random(seed)
    return [user_item(rng) for _ in range(n)]


def blob_item(rng: random.Random) -> dict[str, Any]:
    """A user-keyed item with one 200 KB binary attribute (``blob``) to encrypt."""
    return {
        "user_id": f"u-{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "created_at": CREATED_AT,
        "blob": os.urandom(BLOB_BYTES),
    }
