"""Guarded AWS connections: TLS everywhere except loopback, a region always, no inline secrets.

dynaseal builds its own boto3 clients so that an ``http://`` endpoint, ``verify=False`` or
``use_ssl=False`` is refused before any request leaves the process. Credentials come only from
boto3's normal chain (environment, profile, instance role), never from dynaseal's config.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.utils import get_environ_proxies
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .errors import ConfigError

__all__ = ["aws_client", "check_endpoint", "check_verify", "connect", "is_loopback"]

log = logging.getLogger("dynaseal")


def is_loopback(host: str) -> bool:
    """A literal loopback address, or ``localhost`` when it resolves to loopback only.

    No other name is trusted by its spelling: ``localhost.localdomain`` and the like resolve
    through DNS on a machine without a hosts entry for them, so they are refused (use
    ``127.0.0.1``). ``localhost`` is checked the same way, as a resolver may be misconfigured.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host.lower() != "localhost":
        return False
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in found}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(address: object) -> bool:
    try:
        return ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _parse(endpoint_url: str, source: str) -> tuple[str, str, int | None]:
    """Scheme, host and port, refusing any URL two parsers could read differently.

    botocore connects through urllib3, whose parser treats some characters (a backslash, for
    one) differently from :func:`urllib.parse.urlsplit`; so anything unusual in the authority is
    refused outright and both parsers must agree on what is left.
    """
    if any(c in endpoint_url for c in "\\@%") or any(
        ord(c) <= 0x20 or ord(c) == 0x7F for c in endpoint_url
    ):
        raise ConfigError(
            f"{source}: endpoint URL holds a character that is refused (backslash, '@', '%', "
            "white space or control characters)"
        )
    try:
        parts = urlsplit(endpoint_url)
        port = parts.port
        other = parse_url(endpoint_url)
    except (ValueError, LocationParseError):
        raise ConfigError(f"{source}: endpoint is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source}: endpoint must be an https:// URL")
    host = (parts.hostname or "").lower()
    other_host = (other.host or "").lower().strip("[]")
    if (other.scheme or "").lower() != scheme or other_host != host or other.port != port:
        raise ConfigError(f"{source}: endpoint URL is ambiguous")
    return scheme, host, port


def _proxied(endpoint_url: str, scheme: str) -> bool:
    """Would botocore send requests to this endpoint through a proxy from the environment?

    Asked exactly as botocore asks it when it builds the client's endpoint
    (``botocore.utils.get_environ_proxies`` of the endpoint URL, whose bypass test looks at the
    whole netloc, ``[::1]:8000`` and not ``::1``), so the two answers cannot differ.
    """
    return bool(get_environ_proxies(endpoint_url).get(scheme))


def check_endpoint(endpoint_url: str | None, *, source: str = "endpoint_url",
                   warn: bool = False) -> None:
    """Refuse anything but https, or http on a loopback address (with ``warn``, logged)."""
    if endpoint_url is None:
        return
    scheme, host, port = _parse(endpoint_url, source)
    if scheme == "https" and host:
        return
    if scheme == "http" and host and is_loopback(host):
        if _proxied(endpoint_url, "http"):
            raise ConfigError(
                f"{source}: plaintext HTTP to {host} would go through the HTTP proxy in the "
                f"environment; add {host} to NO_PROXY"
            )
        if warn:
            log.warning("dynaseal: plaintext HTTP to %s (loopback, local development only)",
                        f"{host}:{port}" if port else host)
        return
    if scheme == "http":
        raise ConfigError(
            f"{source}: plaintext http:// is refused for a non-loopback host; use https://"
        )
    raise ConfigError(f"{source}: endpoint must be an https:// URL")


def check_verify(verify: object, *, source: str = "verify") -> None:
    """``verify`` may be absent, True, or a CA bundle path; False or a blank path is refused
    (some botocore versions read a blank path as "do not verify")."""
    if verify is None or verify is True:
        return
    if verify is False:
        raise ConfigError(f"{source}=False is refused: TLS certificates are always verified")
    if not isinstance(verify, str) or not verify.strip():
        raise ConfigError(f"{source}: must be true or the path of a CA bundle")


def connect(
    service: str = "dynamodb",
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    verify: bool | str | None = None,
    use_ssl: bool = True,
    session: Any = None,
    resource: bool = True,
    max_attempts: int = 5,
    max_pool_connections: int | None = None,
    warn_loopback: bool = True,
) -> Any:
    """A boto3 resource (or client) for ``service`` after the transport checks pass.

    ``max_pool_connections``: botocore's connection pool size (None: botocore's default, 10),
    for processes whose threads share one client. ``warn_loopback``: log the warning about
    plaintext HTTP to a loopback endpoint (a second connection to it can skip saying it again)."""
    check_verify(verify)
    for variable in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        if variable in os.environ and not os.environ[variable].strip():
            raise ConfigError(f"{variable} is set but blank: unset it or give a CA bundle path")
    if use_ssl is False:
        raise ConfigError("use_ssl=False is refused: connections to AWS use TLS")
    session = session or boto3.session.Session()
    region = region or os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise ConfigError(
            "no AWS region: set [dynamodb] region in the config, or AWS_REGION / "
            "AWS_DEFAULT_REGION"
        )
    if endpoint_url is not None:
        check_endpoint(endpoint_url)
    if max_pool_connections is not None and (isinstance(max_pool_connections, bool) or not
                                             isinstance(max_pool_connections, int)
                                             or max_pool_connections < 1):
        raise ConfigError("max_pool_connections: must be an integer of at least 1")
    options: dict[str, Any] = {"retries": {"mode": "standard",
                                           "total_max_attempts": max_attempts}}
    if max_pool_connections is not None:
        options["max_pool_connections"] = max_pool_connections
    kwargs: dict[str, Any] = {"region_name": region, "config": BotoConfig(**options)}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if isinstance(verify, str):
        kwargs["verify"] = verify
    factory = session.resource if resource else session.client
    built = factory(service, **kwargs)
    # botocore has now resolved the endpoint from every source (argument, AWS_ENDPOINT_URL*,
    # the shared config file); check what it will really use, before any request is sent
    client = built.meta.client if resource else built
    resolved = client.meta.endpoint_url
    source = "endpoint_url" if endpoint_url else "endpoint from the AWS environment or config"
    check_endpoint(resolved, source=source, warn=warn_loopback)
    return built


def aws_client(service: str, *, region: str | None = None, endpoint_url: str | None = None,
               verify: bool | str | None = None, session: Any = None,
               max_attempts: int = 5) -> Any:
    """A guarded boto3 client for a key service (``kms``, ``secretsmanager``).

    The same transport rules as DynamoDB (:func:`connect`): botocore resolves the endpoint from
    the argument, ``AWS_ENDPOINT_URL_KMS`` / ``AWS_ENDPOINT_URL_SECRETSMANAGER``,
    ``AWS_ENDPOINT_URL`` and the shared config, and what it resolved is checked before any
    request leaves the process. Retries are botocore's standard mode (exponential backoff with
    jitter, throttling included), ``max_attempts`` attempts in all.

    botocore names the Secrets Manager variable ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (from the
    service id); ``AWS_ENDPOINT_URL_SECRETSMANAGER`` (the client name) is honoured too.
    """
    alias = f"AWS_ENDPOINT_URL_{service.upper()}"
    if endpoint_url is None and os.environ.get(alias) and not any(
            v.startswith("AWS_ENDPOINT_URL_") and v != alias and
            v.replace("_", "") == alias.replace("_", "") for v in os.environ):
        endpoint_url = os.environ[alias]
    return connect(service, region=region, endpoint_url=endpoint_url, verify=verify,
                   session=session, resource=False, max_attempts=max_attempts)
