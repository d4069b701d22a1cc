"""The reference users service: a Flask users API over DynamoDB, sealed by dynaseal.

``create_app(config=None)`` builds it; ``make run`` serves it with gunicorn on 127.0.0.1:5000
over the local stack (``python -m dynaseal_users.devserver``). Built only on the public API of
``dynaseal`` and ``flask_dynaseal``: it is the example to copy.
"""

from .app import create_app

__all__ = ["create_app"]
