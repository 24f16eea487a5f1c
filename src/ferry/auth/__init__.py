"""Who may do what: users, their roles and tokens, and the audit trail of changes.

:mod:`ferry.auth.roles` is the policy (which role each API route needs) and
:mod:`ferry.auth.tokens` the token format and expiry rules, both pure;
:mod:`ferry.auth.accounts` judges a presented token against the store.
"""
