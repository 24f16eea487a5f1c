"""``ferry db upgrade|status``: the configured database's schema, without a ferry server.

These open the database named by the configuration (``FERRY_DATABASE_URL``, or
SQLite in ``FERRY_HOME``) directly, so an administrator can upgrade it before
starting the servers, or check it with them stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from ferry import config
from ferry.cli.main import Commands, Context
from ferry.errors import ConfigError, FerryError
from ferry.store import migrate


def _upgrade(engine: Engine) -> int:
    done = migrate.upgrade(engine)
    if not done.before.pending:
        print(f"schema at {done.after} (head): nothing to upgrade")
    else:
        print(f"schema upgraded from {done.before.describe_current()} to {done.after} (head)")
    return 0


def _status(engine: Engine) -> int:
    found = migrate.status(engine)
    print(f"current: {found.describe_current()}")
    print(f"head:    {found.head}")
    if not found.known:
        print("a newer ferry upgraded this database; this ferry cannot use it")
        return ConfigError.exit_code
    print("upgrade pending: run 'ferry db upgrade' (back up the database first)"
          if found.pending else "up to date")
    return 0


def _on_database(action: Callable[[Engine], int]) -> Callable[[argparse.Namespace, Context], int]:
    def handler(_args: argparse.Namespace, _ctx: Context) -> int:
        engine = create_engine(config.database_url())
        where = engine.url.render_as_string(hide_password=True)
        print(f"database {where}")
        try:
            return action(engine)
        except FerryError as exc:
            print(f"ferry: error: {exc.message}", file=sys.stderr)
            return exc.exit_code
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            print(f"ferry: error: database {where}: {reason}", file=sys.stderr)
            return ConfigError.exit_code
        finally:
            engine.dispose()
    return handler


def register(commands: Commands) -> None:
    commands.group("db", "The database's schema (talks to the database, not to a server)")
    commands.add("upgrade", _on_database(_upgrade),
                 "Upgrade the configured database's schema to this ferry's", group="db")
    commands.add("status", _on_database(_status),
                 "Show the database's schema revision and whether an upgrade is pending",
                 group="db")
