from decimal import Decimal


def test_put_get_roundtrip(users):
    item = {"user_id": "u1", "created_at": "2026-01-01", "email": "a@example.com",
            "n": Decimal("1.50"), "blob": b"\x00\xff", "ttl": 7}
    users.put_item(item)
    assert users.get_item({"user_id": "u1"}) == item
    raw = users.table.get_item(Key={"user_id": "u1"})["Item"]
    assert "a@example.com" not in repr(raw)
