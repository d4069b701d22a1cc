"""``make demo``: dynaseal on the embedded local stack (dynalite + a local key file).

Writes a user through dynaseal, then prints what DynamoDB actually stores next to what the app
reads back, finds the user by e-mail through the blind index, and shows a tampered item refused.
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import Config
from .devstack import LocalDynamoDB
from .errors import DynasealError, IntegrityError, UniqueConstraintError
from .keyrings.local import LocalKeyring
from .schema import HEADER_ATTRIBUTE

STATE = Path(".dynaseal")


def _show(value: Any, width: int = 52) -> str:
    if isinstance(value, bytes | bytearray) or type(value).__name__ == "Binary":
        raw = bytes(value)
        text = f"<binary {len(raw)} B> " + base64.b64encode(raw).decode()
    else:
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(stored: dict[str, Any], opened: dict[str, Any]) -> None:
    names = sorted(set(stored) | set(opened), key=lambda n: (n == HEADER_ATTRIBUTE, n))
    print(f"  {'attribute':<12} {'stored in DynamoDB':<54} {'read by the app'}")
    print(f"  {'-' * 12} {'-' * 54} {'-' * 30}")
    for n in names:
        s = _show(stored[n]) if n in stored else "-"
        o = _show(opened[n], 30) if n in opened else "-"
        print(f"  {n:<12} {s:<54} {o}")


def main() -> int:
    STATE.mkdir(exist_ok=True)
    os.chmod(STATE, 0o700)
    config = Config.load(os.environ.get("DYNASEAL_CONFIG", "dynaseal.toml"))
    if not config.keyring_path.exists():
        ring = LocalKeyring.generate(config.keyring_path)
        print(f"created key file {config.keyring_path} (mode 0600), key {ring.primary_key_id}")
    # Local stack only: dynalite ignores credentials, so dummy ones stand in when none are set.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    # on the port dynaseal.toml names (make run's 8000), else on a free one
    port = urlsplit(config.dynamodb.endpoint_url or "").port
    with LocalDynamoDB(STATE / "dynalite", port, log_path=STATE / "dynalite.log") as server:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = server.endpoint_url
        print(f"dynalite listening on {server.endpoint_url}, data in {STATE / 'dynalite'}")
        for line in config.create_tables():
            print(line)
        users = config.sealed_table("users")
        user_id = str(uuid.uuid4())
        email = f"ada.{user_id[:8]}@example.com"
        user = {
            "user_id": user_id,
            "created_at": "2026-11-28T12:00:00Z",
            "role": "member",
            "email": email,
            "ssn": "078-05-1120",
            "name": "Ada Lovelace",
            "address": "12 St James's Square, London",
        }
        users.put_item(user)
        stored = users.table.get_item(Key={"user_id": user_id}, ConsistentRead=True)["Item"]
        opened = users.get_item({"user_id": user_id}, ConsistentRead=True) or {}
        print(f"\nput_item(user {user_id}) through dynaseal:\n")
        _table(stored, opened)

        found = list(users.find("email", email.upper()))
        print(f"\nfind('email', {email.upper()!r}) -> {[u['user_id'] for u in found]}")
        try:
            users.put_item({**user, "user_id": str(uuid.uuid4())})
        except UniqueConstraintError as e:
            print(f"a second user with the same e-mail is refused: {e}")
        updated = users.update_item({"user_id": user_id}, set={"role": "admin"})
        print(f"update_item(role='admin') -> role={updated['role']!r}")

        tampered = dict(stored)
        ssn = bytearray(bytes(stored["ssn"]))
        ssn[-1] ^= 1
        tampered["ssn"] = bytes(ssn)
        users.table.put_item(Item=tampered)
        try:
            users.get_item({"user_id": user_id}, ConsistentRead=True)
        except IntegrityError as e:
            print(f"after flipping one bit of the stored ssn, get_item raises IntegrityError: {e}")
        users.delete_item({"user_id": user_id})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DynasealError as e:
        print(f"dynaseal demo: {e}", file=sys.stderr)
        sys.exit(1)
