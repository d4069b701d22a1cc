"""``flask --app dynaseal_users dynaseal users ...``: the only way to make an admin.

The API never grants roles it does not already hold, so the first admin comes from someone
with shell access to the deployment, through the same config and keys as the app. The group
sits beside the core ``dynaseal`` commands in the app's own ``flask dynaseal`` group
(``Dynaseal.state(app).cli``); the standalone ``dynaseal`` command does not have it.
"""

from __future__ import annotations

import re

import click
from flask import current_app
from flask.cli import AppGroup

from dynaseal import ItemNotFoundError

from .models import ID_PATTERN

__all__ = ["users_cli"]

users_cli = AppGroup("users", help="Manage users of the dynaseal users service.")
# An id may begin with "-" (token_urlsafe's alphabet): click must take it as the argument.
_ID_ARGUMENT = {"ignore_unknown_options": True}


def _set_role(user_id: str, role: str) -> None:
    if not re.fullmatch(ID_PATTERN, user_id):
        raise click.ClickException("not a user id (22 URL-safe characters)")
    service = current_app.extensions["dynaseal_users"]
    view = service.users().scoped("owner", user_id)
    try:
        view.update_item({"user_id": user_id}, set={"role": role})
    except ItemNotFoundError:
        raise click.ClickException(f"no user {user_id}") from None


@users_cli.command("grant-admin", help="Make the user ID an admin.",
                   context_settings=_ID_ARGUMENT)
@click.argument("user_id")
def grant_admin(user_id: str) -> None:
    _set_role(user_id, "admin")
    click.echo(f"user {user_id} is now an admin")


@users_cli.command("revoke-admin", help="Make the user ID a member again.",
                   context_settings=_ID_ARGUMENT)
@click.argument("user_id")
def revoke_admin(user_id: str) -> None:
    _set_role(user_id, "member")
    click.echo(f"user {user_id} is now a member")
