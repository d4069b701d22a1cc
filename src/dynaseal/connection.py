"""Guarded AWS connections: TLS everywhere except loopback, a region always, no inline secrets.

dynaseal builds its own boto3 clients so that an ``http://`` endpoint, ``verify=False`` or
``use_ssl=False`` is refused before any request leaves the process. Credentials come only from
boto3's normal chain (environment, profile, instance role), never from dynaseal's config.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig

from .errors import ConfigError

__all__ = ["check_endpoint", "connect", "effective_endpoint", "is_loopback"]

log = logging.getLogger("dynaseal")


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def effective_endpoint(service: str, endpoint_url: str | None) -> str | None:
    """The endpoint boto3 would use: explicit, else AWS_ENDPOINT_URL_<SERVICE>, else
    AWS_ENDPOINT_URL, else None (AWS's own https endpoint)."""
    if endpoint_url:
        return endpoint_url
    env = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}")
    return env or os.environ.get("AWS_ENDPOINT_URL") or None


def check_endpoint(endpoint_url: str | None, *, source: str = "endpoint_url",
                   warn: bool = False) -> None:
    """Refuse anything but https, or http on a loopback address (with ``warn``, logged)."""
    if endpoint_url is None:
        return
    parts = urlsplit(endpoint_url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "https" and host:
        return
    if scheme == "http" and host and is_loopback(host):
        if warn:
            log.warning("dynaseal: plaintext HTTP to %s (loopback, local development only)",
                        f"{host}:{parts.port}" if parts.port else host)
        return
    if scheme == "http":
        raise ConfigError(
            f"{source}: plaintext http:// is refused for a non-loopback host; use https://"
        )
    raise ConfigError(f"{source}: endpoint must be an https:// URL")


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
) -> Any:
    """A boto3 resource (or client) for ``service`` after the transport checks pass."""
    if verify is False:
        raise ConfigError("verify=False is refused: TLS certificates are always verified")
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
    kwargs: dict[str, Any] = {
        "region_name": region,
        "config": BotoConfig(retries={"mode": "standard", "total_max_attempts": max_attempts}),
    }
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
    check_endpoint(resolved, source=source, warn=True)
    return built
