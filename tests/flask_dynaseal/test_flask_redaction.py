"""Log redaction: what is recognised (and what deliberately is not), the filter on records, and
where init_app installs it."""

from __future__ import annotations

import logging
import sys

import pytest
from flask.logging import default_handler
from flask_support import *  # noqa: F403 (the fixtures: attach, flask_env, make_app)
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_dynaseal import REDACTED, RedactingFilter, redact, redact_mapping, sensitive_name
from flask_dynaseal.logs import process_filter

# -- redact(): by shape ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("ssn 078-05-1120 on file", "ssn [REDACTED:ssn] on file"),
    ("ssn 078 05 1120", "ssn [REDACTED:ssn]"),
    ("card 4111 1111 1111 1111.", "card [REDACTED:card]."),
    ("card 4111-1111-1111-1111", "card [REDACTED:card]"),
    ("card 5555555555554444 ok", "card [REDACTED:card] ok"),
    ("amex 378282246310005", "amex [REDACTED:card]"),
    ("mail Ada.Lovelace+x@example.co.uk now", "mail [REDACTED:email] now"),
    ("to: d\u00e9j\u00e0@b\u00fccher.example", "to: [REDACTED:email]"),
    ("GET /r?email=ada%2Bx%40example.com&n=1", "GET /r?email=[REDACTED:email]&n=1"),
    ("Authorization: Bearer eyJhbGciOi.J9.sig-_x=", "Authorization: [REDACTED]"),
    ("header bearer abc.DEF-123", "header bearer [REDACTED]"),
    ("Basic dXNlcjpwYXNz", "Basic [REDACTED]"),
    ("hash $argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG end",
     "hash [REDACTED:argon2] end"),
    ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED:aws-key-id] used"),
    ("key ASIAY34FZKBOKMUTVV7A", "key [REDACTED:aws-key-id]"),
])
def test_shapes_are_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "order 123456789 shipped",              # a bare 9-digit number is not taken for an SSN
    "zip 12345-6789",
    "at 2026-12-01T23:23:05Z",
    "id 123e4567-e89b-12d3-a456-426614174000",
    "order 4111 1111 1111 1112",            # fails Luhn
    "ts 1733095385123 lease 1733095385123456",  # ms/us timestamps start with 1
    "version 1.2.3-45-6789",                # part of a longer token
    "user@localhost",                        # no domain dot
    "GET /users/abc 200 12ms",
    "",
])
def test_ordinary_text_is_kept(text):
    assert redact(text) == text


def test_long_words_are_kept_in_linear_time():
    # a pattern that retried from every position of a long word took minutes on 20k
    # characters (log lines are attacker-influenced); these finish at once when linear
    for text in ("a" * 100_000, "1" * 100_000, "token" * 20_000, "a." * 50_000,
                 "%41" * 30_000, "1-" * 50_000):
        assert redact(text) == text


_DELIMITERS = " \t\n,;:()[]{}<>\"'/|!?#=*"
PLANTED = ["078-05-1120", "4111 1111 1111 1111", "5555-5555-5555-4444", "ada.l+x@example.com",
           "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln", "AKIAIOSFODNN7EXAMPLE",
           "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub"]


@given(st.sampled_from(PLANTED), st.text(alphabet=_DELIMITERS + "abc 123", max_size=30),
       st.text(alphabet=_DELIMITERS + "abc 123", max_size=30),
       st.sampled_from(_DELIMITERS), st.sampled_from(_DELIMITERS))
@settings(max_examples=300, deadline=None)
def test_a_delimited_planted_value_never_survives(planted, before, after, left, right):
    out = redact(before + left + planted + right + after)
    assert planted not in out
    assert planted.split()[-1] not in out  # not even the token part of a credential


# -- redact(): by name in text --------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("password=hunter2 user=ada", f"password={REDACTED} user=ada"),
    ("login?user=ada&token=abc123&x=1", f"login?user=ada&token={REDACTED}&x=1"),
    ('{"password": "two words", "n": 1}', f'{{"password": {REDACTED}, "n": 1}}'),
    ("{'client_secret': 's3cr3t', 'a': 'b'}", f"{{'client_secret': {REDACTED}, 'a': 'b'}}"),
    ("Cookie: session=abc; x=y", f"Cookie: {REDACTED}; x=y"),
    ("api-key: k-123", f"api-key: {REDACTED}"),
    ("ssn=078051120", f"ssn={REDACTED}"),   # a bare SSN is caught by its name
    ("user=ada token=abc== n=1", f"user=ada token={REDACTED} n=1"),
    ("Set-Cookie: sid=abc=; Path=/", f"Set-Cookie: {REDACTED}; Path=/"),
    ("x=token=abc", f"x=token={REDACTED}"),
    ("note=fine password:x", f"note=fine password:{REDACTED}"),
])
def test_named_values_in_text_are_redacted(text, expected):
    assert redact(text) == expected


def test_configured_names_in_text():
    assert redact("saved {'home': '1 Main St', 'n': 1} home=x", names=["HOME"]) == (
        f"saved {{'home': {REDACTED}, 'n': 1}} home={REDACTED}")
    assert redact("home=x") == "home=x"


def test_an_unquoted_value_ends_at_a_query_delimiter():
    assert redact("password=ab&cd") == f"password={REDACTED}&cd"  # documented limit
    assert redact('{"password": "ab&cd"}') == f'{{"password": {REDACTED}}}'


def test_sensitive_names():
    for name in ("password", "Password_Hash", "access_token", "X-Authorization", "set-cookie",
                 "client_secret", "ssn", "API_KEY", "aws_credentials"):
        assert sensitive_name(name), name
    for name in ("user", "email", "request_id", "status"):
        assert not sensitive_name(name), name
    assert sensitive_name("Address", ["address"])


def test_redact_mapping():
    data = {"user": "ada", "email": "ada@example.com", "password": "hunter2",
            "nested": {"Authorization": "Bearer x", "cards": ["4111111111111111", 7],
                       "n": 4111111111111111, "ok": 12},
            "raw": b"\x00\x01", "home": "1 Main St"}
    assert redact_mapping(data, names=["home"]) == {
        "user": "ada", "email": "[REDACTED:email]", "password": REDACTED,
        "nested": {"Authorization": REDACTED, "cards": ["[REDACTED:card]", 7],
                   "n": REDACTED, "ok": 12},
        "raw": REDACTED, "home": REDACTED}
    assert data["password"] == "hunter2"  # a copy


# -- the filter on records ------------------------------------------------------------------


def _record(msg: str, *args: object, exc: bool = False, stack: bool = False,
            **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("t.redaction")
    exc_info = None
    if exc:
        try:
            raise ValueError("no user ada@example.com")
        except ValueError:
            exc_info = sys.exc_info()
    record = logger.makeRecord("t.redaction", logging.ERROR, __file__, 1, msg, args, exc_info,
                               extra=extra or None, sinfo="Stack: ssn 078-05-1120" if stack
                               else None)
    return record


def test_filter_renders_redacts_and_clears_args():
    record = _record("user %s card %s", "ada@example.com", "4111111111111111")
    assert RedactingFilter().filter(record) is True
    assert record.msg == "user [REDACTED:email] card [REDACTED:card]"
    assert record.args is None
    assert record.getMessage() == record.msg
    assert logging.Formatter("%(message)s").format(record) == record.msg


def test_filter_redacts_exception_and_stack_text_and_drops_exc_info():
    record = _record("failed", exc=True, stack=True)
    RedactingFilter().filter(record)
    assert record.exc_info is None
    assert record.exc_text is not None and "ValueError: no user [REDACTED:email]" in (
        record.exc_text)
    assert record.stack_info == "Stack: ssn [REDACTED:ssn]"
    line = logging.Formatter("%(message)s").format(record)
    assert "ada@example.com" not in line and "[REDACTED:email]" in line


def test_filter_redacts_extra_fields_by_name_and_by_shape():
    record = _record("login", password="hunter2", token="t0k", home="1 Main St",
                     who="ada@example.com", card=4111111111111111, count=3,
                     body={"ssn": "078-05-1120", "name": "Ada"})
    RedactingFilter(names=["home"]).filter(record)
    assert (record.password, record.token, record.home) == (REDACTED, REDACTED, REDACTED)
    assert record.who == "[REDACTED:email]"
    assert record.card == REDACTED
    assert record.count == 3
    assert record.body == {"ssn": REDACTED, "name": "Ada"}
    assert (record.name, record.levelname, record.lineno) == ("t.redaction", "ERROR", 1)


def test_filter_rewrites_a_record_once_and_fixes_an_earlier_format():
    record = _record("user %s", "ada@example.com")
    logging.Formatter("%(message)s").format(record)  # a handler without the filter ran first
    assert record.message == "user ada@example.com"
    flt = RedactingFilter()
    flt.filter(record)
    assert record.message == "user [REDACTED:email]"
    record.msg = "changed after"
    flt.filter(record)  # marked: not rendered twice
    assert record.msg == "changed after"


def test_filter_survives_a_broken_format_string():
    record = _record("value %d of %s", "ada@example.com")
    RedactingFilter().filter(record)
    assert record.msg == "value %d of %s (log arguments could not be formatted)"
    assert record.args is None


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("ada@example.com")

    __repr__ = __str__


def test_filter_never_raises_and_never_leaks():
    record = _record("value %s", _Unprintable(), obj=_Unprintable())
    assert RedactingFilter().filter(record) is True
    assert record.msg == "value %s (log arguments could not be formatted)"
    assert record.obj == REDACTED

    class Broken(str):
        def __str__(self) -> str:
            raise RuntimeError("boom")

    record = _record(Broken("user ada@example.com"), who="ada@example.com")
    assert RedactingFilter().filter(record) is True
    assert record.msg == "[log record withheld: redaction failed with RuntimeError]"
    assert (record.args, record.exc_info, record.who) == (None, None, REDACTED)


# -- where init_app puts it -----------------------------------------------------------------


def test_root_handlers_see_redacted_records_from_child_loggers(make_app, attach):
    root = attach(None, level=logging.DEBUG)
    make_app()
    child = logging.getLogger("myapp.views.users")  # no handler of its own: propagates
    child.info("user %s ssn %s", "ada@example.com", "078-05-1120",
               extra={"password": "hunter2"})
    assert process_filter() in root.filters
    (record,) = [r for r in root.records if r.name == "myapp.views.users"]
    assert record.getMessage() == "user [REDACTED:email] ssn [REDACTED:ssn]"
    assert record.password == REDACTED


def test_the_last_resort_handler_is_covered(make_app):
    make_app()
    assert process_filter() in logging.lastResort.filters


def test_flask_default_handler_and_app_logger(make_app, attach):
    mine = attach("flask_dynaseal_tests")  # the app logger's name (the app's import name)
    app = make_app()
    assert app.logger.name == "flask_dynaseal_tests"
    assert process_filter() in default_handler.filters
    app.logger.warning("reset for %s", "ada@example.com")
    assert mine.lines[-1].endswith("reset for [REDACTED:email]")


def test_gunicorn_loggers_do_not_propagate_and_are_covered(make_app, attach):
    # gunicorn configures these (propagate=False) before it loads the app
    error = attach("gunicorn.error", propagate=False, level=logging.INFO)
    access = attach("gunicorn.access", propagate=False, level=logging.INFO)
    make_app()
    assert process_filter() in error.filters and process_filter() in access.filters
    logging.getLogger("gunicorn.error").error("worker saw %s", "Bearer abc.def")
    # gunicorn's access log: a format string and a dict of atoms
    logging.getLogger("gunicorn.access").info(
        '%(h)s "%(r)s" %(s)s', {"h": "127.0.0.1", "r": "GET /reset?token=s3cr3t&email="
                                "ada@example.com HTTP/1.1", "s": "200"})
    assert error.lines == ["gunicorn.error ERROR worker saw Bearer [REDACTED]"]
    assert access.lines == [
        # email: a blind-index source of the config, so redacted by name
        f'gunicorn.access INFO 127.0.0.1 "GET /reset?token={REDACTED}&email={REDACTED} '
        'HTTP/1.1" 200']


def test_handlers_added_after_init_app_are_covered_at_the_next_request(make_app, attach):
    app = make_app()
    late = attach("gunicorn.error", propagate=False)
    assert process_filter() not in late.filters

    @app.get("/")
    def index() -> str:
        logging.getLogger("gunicorn.error").error("late %s", "078-05-1120")
        return "ok"

    assert app.test_client().get("/").status_code == 200
    assert process_filter() in late.filters
    assert late.lines == ["gunicorn.error ERROR late [REDACTED:ssn]"]


def test_every_carrying_logger_is_rechecked_at_each_request(make_app, attach):
    """The hook's loggers are looked up once per app; their handlers are read at each request,
    and each handler gets the one filter once, whichever app's request sees it first."""
    first, second = make_app(), make_app()
    late = [attach(None), attach(first.logger.name), attach("gunicorn.access", propagate=False),
            attach("werkzeug")]
    assert all(process_filter() not in handler.filters for handler in late)
    assert first.test_client().get("/nope").status_code == 404  # the hooks run before routing
    assert second.test_client().get("/nope").status_code == 404
    assert [handler.filters.count(process_filter()) for handler in late] == [1, 1, 1, 1]
    later = attach("gunicorn.error", propagate=True)  # propagates: its chain ends at the root
    second.test_client().get("/nope")
    assert later.filters == [process_filter()]


def test_blind_index_sources_and_configured_fields_are_redacted_by_name(make_app, attach):
    root = attach(None, level=logging.DEBUG)
    make_app(DYNASEAL_REDACT_FIELDS=["home_address"])
    assert {"email", "home_address"} <= process_filter().names
    logging.getLogger("myapp").info("saved", extra={"email": "not-an-address",
                                                    "home_address": "1 Main St"})
    record = root.records[-1]
    assert (record.email, record.home_address) == (REDACTED, REDACTED)


def test_redaction_can_be_turned_off(make_app, attach):
    handler = attach(None, level=logging.DEBUG)
    make_app(DYNASEAL_REDACT_LOGS=False)
    assert process_filter() not in handler.filters


# -- the AWS SDK's loggers ------------------------------------------------------------------


@pytest.fixture
def aws_levels():
    names = ["botocore", "boto3", "urllib3", "botocore.endpoint", "botocore.parsers"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    yield names
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_aws_debug_logs_are_raised_to_warning(make_app, aws_levels):
    make_app()
    assert {n: logging.getLogger(n).level for n in aws_levels} == dict.fromkeys(
        aws_levels, logging.WARNING)


def test_aws_debug_logs_stay_off_around_real_requests(make_app, attach, aws_levels):
    root = attach(None, level=logging.DEBUG)
    app = make_app()
    logging.getLogger("botocore").setLevel(logging.DEBUG)  # turned back on after init_app

    @app.get("/")
    def index() -> str:
        from flask_dynaseal import Dynaseal

        Dynaseal().table("users").put_item({"user_id": "aws-log", "email": "aws@example.com"})
        return "ok"

    assert app.test_client().get("/").status_code == 200
    assert [r.name for r in root.records if r.name.startswith(("botocore", "urllib3"))] == []


def test_canary_nothing_planted_reaches_a_handler_at_debug(make_app, attach, aws_levels):
    """Everything at DEBUG (botocore too, before init_app): a request that writes, finds,
    updates and reads an item holding planted values, and logs the item and the body."""
    import base64

    root = attach(None, level=logging.DEBUG)
    app = make_app(DYNASEAL_REDACT_FIELDS=["home"])
    planted = {"email": "canary.7c1@example.com", "ssn": "219-09-9999",
               "card": "4012888888881881", "home": "12 Canary Row", "password": "Tr0ub4dor-3x"}

    @app.post("/canary")
    def canary() -> str:
        from flask import request

        from flask_dynaseal import Dynaseal

        users = Dynaseal().table("users")
        item = {"user_id": "canary-1", **planted}
        users.put_item(item)
        assert [i["user_id"] for i in users.find("email", planted["email"])] == ["canary-1"]
        users.update_item({"user_id": "canary-1"}, set={"ssn": planted["ssn"]})
        got = users.get_item({"user_id": "canary-1"})
        app.logger.debug("stored %s from body %s", got, request.get_data(as_text=True),
                         extra={"home": planted["home"], "body": request.get_json()})
        app.logger.info("password=%s", planted["password"])
        return "ok"

    response = app.test_client().post("/canary", json=planted)
    assert response.status_code == 200
    assert root.records  # the app's lines were logged, redacted
    forms = []
    for value in planted.values():
        raw = value.encode()
        forms += [value, base64.b64encode(raw).decode(), raw.hex()]
    dumped = "\n".join(root.lines + [repr(vars(r)) for r in root.records])
    for form in forms:
        assert form not in dumped, form
    assert not [r for r in root.records if r.name.startswith(("botocore", "urllib3"))]


def test_unsafe_flag_leaves_aws_levels_alone(make_app, aws_levels, caplog):
    with caplog.at_level(logging.WARNING, logger="flask_dynaseal"):
        make_app(DYNASEAL_UNSAFE_AWS_DEBUG_LOGS=True)
    assert {n: logging.getLogger(n).level for n in aws_levels} == dict.fromkeys(
        aws_levels, logging.DEBUG)
    assert any("DYNASEAL_UNSAFE_AWS_DEBUG_LOGS is on" in m for m in caplog.messages)
