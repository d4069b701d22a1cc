"""Guarded connections: TLS everywhere except loopback, a region always, no unsafe switches.

Refused endpoints are only parsed, never contacted: every refusal happens before connect()
returns, and the allowed non-loopback endpoints are only inspected on the built client.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dynaseal import ConfigError, DynasealError
from dynaseal.connection import check_endpoint, connect, is_loopback

_ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(autouse=True)
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No endpoint variables, no profile, an empty AWS config file; region us-east-1."""
    for var in (*_ENDPOINT_VARS, "AWS_PROFILE", "AWS_REGION",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return empty


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dynaseal" and r.levelno == logging.WARNING]


# -- is_loopback --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1",
                                  "[::1]"])
def test_is_loopback_true(host):
    assert is_loopback(host) is True


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.1", "0.0.0.0", "::", "example.com",
                                  "localhost.example.com", "127.0.0.1.nip.io", "",
                                  "localhost.localdomain"])
def test_is_loopback_false(host):
    assert is_loopback(host) is False


# -- check_endpoint -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://dynamodb.us-east-1.amazonaws.com",
                                 "https://10.0.0.5:8000", "HTTPS://dynamodb.example.com/"])
def test_check_endpoint_allows_https_silently(url, caplog):
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    assert check_endpoint(url) is None
    assert _warnings(caplog) == []


def test_check_endpoint_allows_none():
    assert check_endpoint(None) is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000",
                                 "http://[::1]:8000", "http://127.0.0.1"])
def test_check_endpoint_allows_loopback_http(url):
    assert check_endpoint(url) is None


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://dynamodb.example.com",
                                 "http://localhost.example.com:8000",
                                 "http://127.0.0.1@evil.example.com/",
                                 "HTTP://10.0.0.5:8000"])
def test_check_endpoint_refuses_plain_http_to_other_hosts(url):
    # userinfo ('@') is refused before the host is even looked at
    expected = (r"^endpoint_url: endpoint URL holds a character that is refused" if "@" in url
                else r"^endpoint_url: plaintext http:// is refused")
    with pytest.raises(ConfigError, match=expected):
        check_endpoint(url)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "ftp://dynamodb.example.com",
                                 "dynamodb.example.com", "https://", "http://"])
def test_check_endpoint_refuses_other_schemes(url):
    with pytest.raises(ConfigError, match=r"endpoint must be an https:// URL|plaintext http"):
        check_endpoint(url)


def test_check_endpoint_names_the_source():
    with pytest.raises(ConfigError, match=r"^AWS_ENDPOINT_URL: plaintext http://"):
        check_endpoint("http://10.0.0.5", source="AWS_ENDPOINT_URL")


# -- connect: refusals --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://dynamodb.example.com"])
def test_connect_refuses_http_to_non_loopback(url):
    with pytest.raises(ConfigError, match="plaintext http:// is refused"):
        connect("dynamodb", region="us-east-1", endpoint_url=url)


def test_connect_refuses_ftp():
    with pytest.raises(ConfigError, match=r"endpoint must be an https:// URL"):
        connect("dynamodb", region="us-east-1", endpoint_url="ftp://127.0.0.1:21")


def test_connect_refuses_verify_false():
    with pytest.raises(ConfigError, match=r"verify=False is refused"):
        connect("dynamodb", region="us-east-1", endpoint_url="https://dynamodb.example.com",
                verify=False)


def test_connect_refuses_use_ssl_false():
    with pytest.raises(ConfigError, match=r"use_ssl=False is refused"):
        connect("dynamodb", region="us-east-1", endpoint_url="https://dynamodb.example.com",
                use_ssl=False)


def test_connect_refuses_verify_false_even_on_loopback(caplog):
    with pytest.raises(ConfigError, match=r"verify=False is refused"):
        connect("dynamodb", region="us-east-1", endpoint_url="http://127.0.0.1:8000",
                verify=False)


def test_connect_refuses_missing_region(no_region):
    with pytest.raises(ConfigError, match=r"no AWS region"):
        connect("dynamodb", endpoint_url="https://dynamodb.example.com")


def test_connect_refuses_missing_region_for_client_too(no_region):
    with pytest.raises(ConfigError, match=r"no AWS region"):
        connect("dynamodb", resource=False)


def test_config_error_is_a_dynaseal_error():
    with pytest.raises(DynasealError):
        connect("dynamodb", region="us-east-1", endpoint_url="http://10.0.0.5")


@pytest.mark.parametrize("var", ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"])
@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://dynamodb.example.com"])
def test_connect_refuses_http_endpoint_from_environment(monkeypatch, var, url):
    monkeypatch.setenv(var, url)
    with pytest.raises(ConfigError, match=r"plaintext http:// is refused") as e:
        connect("dynamodb", region="us-east-1")
    # The message points at the environment, not at an endpoint_url argument never given.
    assert "environment" in str(e.value)
    assert not str(e.value).startswith("endpoint_url")


def test_connect_refuses_ftp_endpoint_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "ftp://127.0.0.1/")
    with pytest.raises(ConfigError, match=r"endpoint must be an https:// URL"):
        connect("dynamodb", region="us-east-1")


def test_service_specific_env_var_wins_over_generic(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://generic.example.com")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://10.0.0.5:8000")
    with pytest.raises(ConfigError, match="plaintext http://"):
        connect("dynamodb", region="us-east-1")


def test_other_service_env_var_is_ignored(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://10.0.0.5:8000")
    resource = connect("dynamodb", region="us-east-1")
    assert resource.meta.client.meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


def test_explicit_endpoint_wins_over_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://10.0.0.5:8000")
    resource = connect("dynamodb", region="us-east-1", endpoint_url="https://x.example.com")
    assert resource.meta.client.meta.endpoint_url == "https://x.example.com"


def test_connect_refuses_http_endpoint_from_aws_config_file(monkeypatch, tmp_path):
    """boto3 also takes endpoint_url from the shared config file; the guard must see it."""
    cfg = tmp_path / "aws-config-with-endpoint"
    cfg.write_text("[default]\nregion = us-east-1\nendpoint_url = http://10.0.0.5:8000\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg))
    with pytest.raises(ConfigError, match="plaintext http://"):
        resource = connect("dynamodb")
        # Never contacted: only the endpoint the client would use is inspected.
        pytest.fail(f"connect() accepted {resource.meta.client.meta.endpoint_url}")


# -- connect: what is allowed -------------------------------------------------------------


def test_connect_allows_https_anywhere_without_a_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    resource = connect("dynamodb", region="eu-west-1",
                       endpoint_url="https://dynamodb.example.com")
    client = resource.meta.client
    assert client.meta.endpoint_url == "https://dynamodb.example.com"
    assert client.meta.region_name == "eu-west-1"
    assert _warnings(caplog) == []


def test_connect_sets_the_connection_pool_size():
    client = connect("dynamodb", region="eu-west-1", resource=False, max_pool_connections=40)
    assert client.meta.config.max_pool_connections == 40
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    default = connect("dynamodb", region="eu-west-1", resource=False)
    assert default.meta.config.max_pool_connections == 10


@pytest.mark.parametrize("size", [0, -1, True, 2.5, "20"])
def test_connect_refuses_a_bad_connection_pool_size(size):
    with pytest.raises(ConfigError, match=r"^max_pool_connections: must be an integer of "
                                          r"at least 1$"):
        connect("dynamodb", region="eu-west-1", resource=False, max_pool_connections=size)


def test_connect_default_endpoint_is_aws_https():
    client = connect("dynamodb", region="eu-central-1", resource=False)
    assert client.meta.endpoint_url == "https://dynamodb.eu-central-1.amazonaws.com"


def test_connect_takes_region_from_environment(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    client = connect("dynamodb", resource=False)
    assert client.meta.region_name == "ap-southeast-2"


def test_connect_takes_region_from_aws_region_variable(monkeypatch, no_region):
    """The refusal message tells users to set AWS_REGION, so AWS_REGION must be enough."""
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    client = connect("dynamodb", resource=False)
    assert client.meta.region_name == "eu-west-3"


def test_connect_verify_ca_bundle_is_allowed(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    client = connect("dynamodb", region="us-east-1", verify=str(bundle), resource=False)
    assert client.meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:8000",
                                 "http://[::1]:8000"])
def test_connect_allows_loopback_http_with_one_warning(url, caplog):
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    resource = connect("dynamodb", region="us-east-1", endpoint_url=url)
    assert resource.meta.client.meta.endpoint_url == url
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "loopback" in message
    assert "\n" not in message


def test_connect_allows_loopback_from_environment_with_one_warning(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8123")
    resource = connect("dynamodb", region="us-east-1")
    assert resource.meta.client.meta.endpoint_url == "http://127.0.0.1:8123"
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "loopback" in warnings[0].getMessage()


def test_connect_to_dynalite_works(dynalite, caplog):
    caplog.set_level(logging.DEBUG, logger="dynaseal")
    client = connect("dynamodb", region="us-east-1", endpoint_url=dynalite.endpoint_url,
                     resource=False)
    assert isinstance(client.list_tables()["TableNames"], list)
    assert len(_warnings(caplog)) == 1
