"""dynaseal audit against dynalite: planted sensitive values, verification failures, the
census, table settings, configuration problems, exit codes, and the HTML report in headless
Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from ops_support import job_command, write_config

from dynaseal import LocalKeyring, Schema, SealedTable
from dynaseal.ops.detectors import detect, mask
from support import flip

SCHEMA = Schema("user_id", sign=["created_at", "role"], plain=["ttl"])
SPEC = {"partition_key": "user_id", "sign": ["created_at", "role"], "plain": ["ttl"]}
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
PLANTED = {
    "ssn": "078-05-1120",
    "card": "4111 1111 1111 1111",
    "email": "ada@example.com",
    "phone": "+1 415-555-0100",
    "aws_key": "AKIAIOSFODNN7EXAMPLE",
    "token": JWT,
    "private_key": PEM,
}
KIND_OF = {"ssn": "ssn", "card": "card", "email": "email", "phone": "phone",
           "aws_key": "aws-access-key", "token": "jwt", "private_key": "pem-private-key"}


def _sealed_table(tmp_path: Path, make_table: Any, dynalite: Any, n: int = 20
                  ) -> tuple[SealedTable, Path]:
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    raw = make_table()
    table = SealedTable(raw, schema=SCHEMA, keyring=ring)
    for i in range(n):
        table.put_item({"user_id": f"u{i:03d}", "created_at": "2026-11-28", "role": "member",
                        "ttl": 1900000000 + i, **PLANTED, "nested": {"list": [PLANTED["ssn"]]}})
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, **SPEC}})
    return table, config


def _audit(config: Path, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(job_command("audit", "users", "--config", str(config), *args),
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_detectors_find_each_kind_and_mask():
    for attr, value in PLANTED.items():
        assert detect(value) == [KIND_OF[attr]], attr
    for harmless in ("2026-11-28", "member", "1900000001", "4111111111111112", "000-12-3456",
                     "hello world, nothing here"):
        assert detect(harmless) == []
    assert mask("078-05-1120") == "*********20"
    assert mask("abc") == "***"


def test_fully_sealed_table_is_clean(tmp_path, make_table, dynalite):
    table, config = _sealed_table(tmp_path, make_table, dynalite)
    status, out, err = _audit(config, "--format", "json", "--no-progress")
    assert status == 0, err
    report = json.loads(out)
    assert report["status"] == "clean"
    assert report["finding_count"] == 0
    assert report["findings"] == {"sensitive_values": [], "verification_failures": [],
                                  "verification_failure_count": 0, "configuration": []}
    ring = LocalKeyring.load(tmp_path / "keys.json")
    assert report["census"] == {"table": table.name, "items": 20,
                                "keys": {f"local:{ring.primary_key_id}": 20},
                                "unsealed": 0, "malformed": 0}
    # dynalite reports none of the three settings: "unknown", never a finding
    assert report["settings"] == {"server_side_encryption": "unknown",
                                  "point_in_time_recovery": "unknown",
                                  "deletion_protection": "unknown"}
    assert report["warnings"] == ["endpoint: plaintext HTTP to 127.0.0.1 (local development "
                                  "only)"]
    status, out, _ = _audit(config, "--no-progress")
    assert status == 0
    assert out.splitlines()[0] == f"audit of table {table.name} ({config}): clean"


def test_every_planted_value_is_found_masked(tmp_path, make_table, dynalite):
    table, config = _sealed_table(tmp_path, make_table, dynalite, n=3)
    raw = table.table
    raw.put_item(Item={"user_id": "plain-1", **PLANTED, "ttl": 5,
                       "profile": {"contact": PLANTED["email"], "cards": [PLANTED["card"]]}})
    table.put_item({"user_id": "leaky", "role": "ops@example.com", "created_at": "x"})
    victim = raw.get_item(Key={"user_id": "u001"})["Item"]
    victim["ssn"] = flip(victim["ssn"], 3)
    raw.put_item(Item=victim)
    status, out, _ = _audit(config, "--format", "json", "--no-progress")
    assert status == 1
    report = json.loads(out)
    found = {(f["attribute"], f["kind"]): f for f in report["findings"]["sensitive_values"]}
    expected = {(attr, KIND_OF[attr]) for attr in PLANTED}
    expected |= {("profile.contact", "email"), ("profile.cards[]", "card"), ("role", "email")}
    assert set(found) == expected
    assert found[("ssn", "ssn")]["count"] == 1
    assert found[("ssn", "ssn")]["examples"] == [{"key": "{user_id='plain-1'}",
                                                   "masked": "*********20"}]
    assert found[("role", "email")]["examples"] == [{"key": "{user_id='leaky'}",
                                                      "masked": "*************om"}]
    for value in (*PLANTED.values(), "ops@example.com"):
        assert value not in out
    failures = sorted(report["findings"]["verification_failures"], key=lambda f: f["key"])
    assert failures == [
        {"key": "{user_id='plain-1'}", "reason": "item is not sealed (no dynaseal header)"},
        {"key": "{user_id='u001'}", "reason": "item failed authentication"},
    ]
    assert report["finding_count"] == sum(f["count"] for f in found.values()) + 2
    assert report["census"]["unsealed"] == 1
    status, text, _ = _audit(config, "--no-progress")
    assert status == 1
    assert "  FINDING ssn: 1 ssn" in text.splitlines()
    assert "  FINDING key {user_id='u001'}: item failed authentication" in text.splitlines()
    for value in PLANTED.values():
        assert value not in text


def test_fernet_tokens_are_reported_as_field_encrypted(tmp_path, make_table, dynalite):
    from cryptography.fernet import Fernet

    table, config = _sealed_table(tmp_path, make_table, dynalite, n=1)
    token = Fernet(Fernet.generate_key()).encrypt(b"ada@example.com").decode()
    table.table.put_item(Item={"user_id": "f1", "email_enc": token})
    status, out, _ = _audit(config, "--format", "json", "--no-progress")
    assert status == 1
    [finding] = json.loads(out)["findings"]["sensitive_values"]
    assert finding["attribute"] == "email_enc"
    assert finding["kind"] == "fernet-token"
    assert finding["note"] == "field-encrypted outside dynaseal, migrate with `--from fernet`"


def test_configuration_problems_and_strict_and_errors(tmp_path, make_table, dynalite):
    _table, config = _sealed_table(tmp_path, make_table, dynalite, n=2)
    os.chmod(tmp_path / "keys.json", 0o644)
    status, out, _ = _audit(config, "--format", "json", "--no-progress")
    assert status == 1
    report = json.loads(out)
    assert report["findings"]["configuration"] == [
        f"key file {tmp_path / 'keys.json'}: readable or writable by group or others "
        "(mode 0644; run 'chmod 600')"]
    assert report["verified"] is False
    os.chmod(tmp_path / "keys.json", 0o600)
    status, out, _ = _audit(config, "--format", "json", "--strict", "--no-progress")
    assert status == 1  # the loopback endpoint warning becomes a finding
    assert json.loads(out)["findings"]["table_settings"] == [
        "endpoint: plaintext HTTP to 127.0.0.1 (local development only)"]
    proc = subprocess.run(job_command("audit", "nosuch", "--config", str(config)),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr == f"dynaseal: error: {config}: no table 'nosuch' is configured\n"


# -- the HTML report -------------------------------------------------------------------------


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 4
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line) if channels == 3 else bytes(
            v for j in range(0, stride, 4) for v in line[j:j + 3]))
        prev = line
    return width, height, rows


def _count_color(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    target = bytes(rgb)
    return sum(1 for row in rows for j in range(0, len(row), 3) if row[j:j + 3] == target)


def test_html_report_is_self_contained_and_renders_in_chromium(tmp_path, make_table, dynalite):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed: skipped the headless-browser check of the "
                    "HTML audit report (.ci/run installs Debian's chromium package)")
    table, config = _sealed_table(tmp_path, make_table, dynalite, n=4)
    ring = LocalKeyring.load(tmp_path / "keys.json")
    old = ring.primary_key_id
    new = ring.rotate()
    SealedTable(table.table, schema=SCHEMA, keyring=ring).put_item(
        {"user_id": "newer", "created_at": "x", "role": "y"})
    table.table.put_item(Item={"user_id": "plain", "email": "ada@example.com",
                               "ssn": "078-05-1120", "note": "<script>alert(1)</script>"})
    html_path = tmp_path / "report.html"
    status, _, err = _audit(config, "--format", "html", "-o", str(html_path), "--no-progress")
    assert status == 1, err
    html = html_path.read_text(encoding="utf-8")
    # self-contained: no script, no external reference of any kind
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=""", html, re.IGNORECASE)
    assert not re.search(r"url\(", html)
    assert "default-src 'none'" in html
    assert "ada@example.com" not in html and "078-05-1120" not in html

    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", html_path.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    bars = re.findall(r'<rect class="bar"[^>]*data-label="([^"]+)" data-value="(\d+)"', dom)
    key_bars = dict(bars[:3])
    assert key_bars == dict(sorted({f"local:{old}": "4", f"local:{new}": "1"}.items())) | {
        "not sealed": "1"}
    finding_bars = dict(bars[3:])
    assert finding_bars == {"email": "1", "ssn": "1", "(verification failures)": "1"}
    assert 'id="status" class="status findings"' in dom

    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1000,1400",
                    html_path.as_uri()], capture_output=True, timeout=120, check=True)
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    assert _count_color(rows, (0x15, 0x65, 0xC0)) > 500  # the key bars were painted
    assert _count_color(rows, (0xC6, 0x28, 0x28)) > 500  # the finding bars too
