"""Request and response bodies: the one description of the API's data.

The routes validate with these models and ``/openapi.json`` is generated from them, so the
documentation cannot drift from what the code accepts. Every request model is strict (no type
coercion), forbids unknown fields and keeps submitted values out of its errors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "ID_PATTERN",
    "Created",
    "ErrorBody",
    "FieldError",
    "Health",
    "LoginRequest",
    "ReadQuery",
    "RegisterRequest",
    "Session",
    "UpdateRequest",
    "UserRecord",
]

ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"
"""A user id: ``secrets.token_urlsafe(16)``, 128 random bits in 22 URL-safe characters."""


def _absent_not_null(schema: dict[str, Any]) -> None:
    """Optional fields may be left out, not sent as null: say so in the JSON schema."""
    for prop in schema.get("properties", {}).values():
        alternatives = prop.get("anyOf", [])
        if {"type": "null"} in alternatives:
            rest = [a for a in alternatives if a != {"type": "null"}]
            del prop["anyOf"]
            prop.pop("default", None)
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest


class _Strict(BaseModel):
    # Submitted personal data and passwords are declared with ``repr=False``: a request model
    # sits in a view's locals, which error reporters record by repr.
    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True,
                              frozen=True, json_schema_extra=_absent_not_null)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class _Out(BaseModel):
    # A response is built from a decrypted record: should a stored value not fit (an item
    # written by another tool), the error reaches the log, and must not quote the value.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# No \s: it means different things to pydantic (Rust), Python and JSON Schema (ECMA 262).
Email = Annotated[str, StringConstraints(
    min_length=3, max_length=254, pattern=r"^[^@ \t\r\n]+@[^@ \t\r\n]+\.[^@ \t\r\n]+$")]
Password = Annotated[str, StringConstraints(min_length=12, max_length=1024)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Address = Annotated[str, StringConstraints(min_length=1, max_length=500)]
SSN = Annotated[str, StringConstraints(pattern=r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$")]
Role = Literal["member", "admin"]


class RegisterRequest(_Strict):
    """``POST /users``."""

    email: Email = Field(repr=False)
    password: Password = Field(repr=False)
    name: Name = Field(repr=False)
    ssn: SSN = Field(repr=False)
    address: Address = Field(repr=False)


class LoginRequest(_Strict):
    """``POST /sessions``. Deliberately loose about the values: any two strings take the same
    path (lookup, then one argon2 verification), so a malformed e-mail or password is answered
    exactly like a wrong one, in status, body and time."""

    email: Annotated[str, StringConstraints(max_length=4096)] = Field(repr=False)
    password: Annotated[str, StringConstraints(max_length=4096)] = Field(repr=False)


class UpdateRequest(_Strict):
    """``PATCH /users/{id}``: the owner may change name, address and password (giving the
    current password); an admin may also change the role, and needs no current password to
    reset someone else's."""

    name: Name | None = Field(default=None, repr=False)
    address: Address | None = Field(default=None, repr=False)
    password: Password | None = Field(default=None, repr=False)
    current_password: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, repr=False)
    role: Role | None = None

    model_config = ConfigDict(json_schema_extra=lambda schema: _update_schema(schema))

    @model_validator(mode="after")
    def _something(self) -> UpdateRequest:
        if all(v is None for v in (self.name, self.address, self.password, self.role)):
            raise ValueError("give at least one of name, address, password, role")
        return self


def _update_schema(schema: dict[str, Any]) -> None:
    _absent_not_null(schema)
    schema["anyOf"] = [{"required": [name]} for name in ("name", "address", "password", "role")]


class ReadQuery(_Strict):
    """The query string of ``GET /users/{id}``: ``?reveal=ssn`` (owner only)."""

    reveal: Literal["ssn"] | None = None


class Created(_Out):
    id: str = Field(pattern=ID_PATTERN)


class Session(_Out):
    token: str
    expires_in: int = Field(description="seconds until the token expires")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105


class UserRecord(_Out):
    id: str = Field(pattern=ID_PATTERN)
    email: str
    name: str
    ssn: str = Field(description="masked as ***-**-6789 unless the owner asks ?reveal=ssn")
    address: str
    role: Role
    created_at: str


class Health(_Out):
    status: Literal["ok"]


class FieldError(_Out):
    field: str = Field(description="where: a dotted path of declared names, or '(unknown)'")
    problem: str


class ErrorBody(_Out):
    """Every error the service returns. Never holds a submitted value."""

    error: str
    message: str
    fields: list[FieldError] | None = None


def field_errors(errors: list[dict[str, Any]], known: set[str]) -> list[FieldError]:
    """pydantic's errors reduced to field and problem: no input, url or ctx; a name the model
    does not declare (an unknown field, itself submitted data) is shown as ``(unknown)``."""
    out = []
    for e in errors:
        parts = [str(p) if (isinstance(p, int) or p in known) else "(unknown)"
                 for p in e.get("loc", ())]
        problem = str(e.get("msg", "invalid"))
        if e.get("type") == "extra_forbidden":
            problem = "unknown field"
        out.append(FieldError(field=".".join(parts) or "(body)", problem=problem))
    return out
