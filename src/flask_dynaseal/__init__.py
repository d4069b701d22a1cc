"""flask_dynaseal: dynaseal for Flask apps in two lines.

```python
from flask_dynaseal import Dynaseal
ds = Dynaseal(app)          # or ds = Dynaseal(); ds.init_app(app) in a factory
users = ds.table("users")   # the app's SealedTable, shared by the worker's threads
```

``init_app`` validates the config once and fails fast with ``dynaseal.ConfigError``, installs
log redaction (:func:`redact` and :class:`RedactingFilter` are public for logs written
elsewhere), keeps botocore's debug logs off and registers ``flask dynaseal ...``: the commands
of the ``dynaseal`` command plus those the app adds (``ds.state(app).cli``, an
:class:`AppCommands`).
"""

from .commands import AppCommands
from .extension import EXTENSION_KEY, Dynaseal, DynasealState
from .redaction import REDACTED, RedactingFilter, redact, redact_mapping, sensitive_name
from .settings import AppSettings

__all__ = [
    "EXTENSION_KEY",
    "REDACTED",
    "AppCommands",
    "AppSettings",
    "Dynaseal",
    "DynasealState",
    "RedactingFilter",
    "redact",
    "redact_mapping",
    "sensitive_name",
]
