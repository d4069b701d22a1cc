"""``flask dynaseal ...``: one command group per app, the core commands plus the app's own.

The ``dynaseal`` console script and ``flask dynaseal`` run the same command objects (one
implementation of every command, in :mod:`dynaseal.cli`). An app may add commands of its own
under ``flask dynaseal`` (the users service adds ``users grant-admin`` there), so each app gets
its own group, :class:`AppCommands`, that looks the core commands up in the shared
``dynaseal.cli.cli`` group at each use and keeps the app's additions to itself: importing or
building an app never changes what the standalone ``dynaseal`` command offers, and two apps in
one process never see each other's commands.

In an app factory, after ``init_app``::

    ds.state(app).cli.add_command(my_group)      # flask dynaseal my-group ...

    @ds.state(app).cli.command("hello")          # flask dynaseal hello; runs in an app context
    def hello() -> None: ...
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from dynaseal.cli import DynasealGroup

__all__ = ["AppCommands"]


class AppCommands(DynasealGroup, AppGroup):
    """The ``flask dynaseal`` group of one app.

    - The core commands are those of ``core`` (``dynaseal.cli.cli``), the same objects, looked
      up live; this group never copies or changes them.
    - ``add_command`` / ``command`` / ``group`` add the app's own commands, here only; a name
      the core group already uses is refused (one meaning per command name).
    - Like the core group, a dynaseal or AWS error becomes one line and exit status 1, and
      (Flask's ``AppGroup``) commands made with ``command`` run inside the app context.
    """

    def __init__(self, core: click.Group) -> None:
        super().__init__(name=core.name, help=core.help, callback=core.callback,
                         params=list(core.params))
        self.core = core

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None or name in self.core.commands:
            raise ValueError(f"flask_dynaseal: {name!r} is a dynaseal command; give the app's "
                             "command another name")
        super().add_command(cmd, name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = self.commands.get(cmd_name)
        return own if own is not None else self.core.get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.core.list_commands(ctx), *self.commands})
