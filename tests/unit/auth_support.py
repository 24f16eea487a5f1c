"""Accounts for unit tests of the API: a database whose first admin has a given token."""

from __future__ import annotations

from pathlib import Path

from ferry.auth.accounts import Accounts
from ferry.store.accounts import AccountRecords
from ferry.store.db import Store


def admin_accounts(where: Path | str, token: str) -> Accounts:
    """Accounts on the SQLite database in directory ``where`` (or at URL ``where``) whose
    user admin has ``token``, as a server adopts an install's token file."""
    url = where if isinstance(where, str) else f"sqlite:///{where / 'ferry.db'}"
    accounts = Accounts(AccountRecords(Store(url).engine))
    accounts.adopt_first_token(token)
    return accounts
