"""Keep key material out of botocore's debug log.

Why: at DEBUG level botocore logs every request it makes and every response body it parses
(``botocore.endpoint``, ``botocore.parsers``). For KMS those hold the plaintext data key
(``GenerateDataKey`` and ``Decrypt`` answers, ``Encrypt`` requests); for Secrets Manager, the
keyset itself (``SecretString``). An app that turns on DEBUG logging to chase a network problem
must not write its keys to disk. The KMS and Secrets Manager keyrings install this filter on
those two loggers: a record that mentions one of these fields is replaced by a one-line note
saying that a body was withheld; every other record passes unchanged.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["install_log_redaction"]

_LOGGERS = ("botocore.endpoint", "botocore.parsers")
_MARKERS = ("Plaintext", "SecretString", "SecretBinary")
_WITHHELD = "dynaseal: a KMS or Secrets Manager message holding key material was not logged"
_lock = threading.Lock()


class _RedactKeyMaterial(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted: leave it to logging
            return True
        if any(marker in text for marker in _MARKERS):
            record.msg = _WITHHELD
            record.args = ()
        return True


_FILTER = _RedactKeyMaterial()


def install_log_redaction() -> None:
    """Install the filter on botocore's request and response loggers (once)."""
    with _lock:
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
