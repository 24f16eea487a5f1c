"""Accounts for unit tests of the API: a database whose first admin has a given token."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ferry.auth.accounts import Accounts
from ferry.store.accounts import AccountRecords
from ferry.store.db import Store


def admin_accounts(where: Path | str, token: str,
                   clock: Callable[[], float] = time.time) -> Accounts:
    """Accounts on the SQLite database in directory ``where`` (or at URL ``where``) whose
    user admin has ``token``, as a server adopts an install's token file; ``clock``: the
    time the accounts judge expiry by."""
    url = where if isinstance(where, str) else f"sqlite:///{where / 'ferry.db'}"
    accounts = Accounts(AccountRecords(Store(url).engine), clock)
    accounts.adopt_first_token(token)
    return accounts
