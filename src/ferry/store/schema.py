"""ferry's database schema: the tables as the newest migration leaves them.

This is the schema the store's code reads and writes. The database reaches it
through the Alembic revisions in ``ferry/store/migrations/versions``; a unit
test compares a migrated database with this metadata, so the two cannot drift.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from ferry.job import JobState
from ferry.model import DEFAULT_SETTINGS

metadata = MetaData()

hosts_table = Table(
    "hosts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("uri", String(512), nullable=False),
    Column("migration_address", String(255)),
    Column("migration_enabled", Boolean, nullable=False, default=True),
    Column("maintenance", Boolean, nullable=False, default=False),
    Column("max_migrations", Integer, nullable=False, default=DEFAULT_SETTINGS.max_migrations),
    Column("memory_limit_mib", Integer),
    Column("migration_bandwidth_mibps", Integer),  # NULL: no limit
    Column("migration_interface", String(64)),
    Column("migration_network_isolated", Boolean, nullable=False, default=False),
    Column("cluster", String(64)),
    Column("allow_cleartext_migration", Boolean, nullable=False, server_default=false()),
)

clusters_table = Table(
    "clusters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("evc", Text),  # the EVC mode as JSON; NULL: EVC is off
    Column("migration_policy", String(32)),  # its VMs' moves' policy; NULL: ferry's default
)

# A VM's own settings, by its UUID (a name can be reused).
vm_settings_table = Table(
    "vm_settings",
    metadata,
    Column("vm_uuid", String(36), primary_key=True),
    Column("migration_policy", String(32), nullable=False),
)

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("vm", String(255), nullable=False),
    Column("source_host", String(64), nullable=False),
    Column("dest_host", String(64)),
    Column("state", String(16), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("error", Text),
    Column("progress", Text, nullable=False, default="{}"),
    Column("report", Text, nullable=False, default="{}"),
    Column("vm_uuid", String(36)),  # NULL for a job that holds no VM (an evacuation)
    Column("owner", String(36)),  # the id of the server (servers.id) that runs the job
    Column("lease_until", Float),  # database-clock seconds until which the owner holds it
    Column("spec", Text, nullable=False, server_default="{}"),  # the request, as JSON
    # JSON list of the hosts the job takes a migration slot on
    Column("slot_hosts", Text, nullable=False, server_default="[]"),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("parent_id", String(36)),  # the evacuation a move belongs to
    Column("requested_by", String(64)),  # the user who asked; NULL: before users existed
    Index("jobs_queue", "state", "created_at"),
)

# The states of a job that still holds its VM; a job leaves them when it ends or when
# a restarted server marks it interrupted, which releases the VM.
UNFINISHED = tuple(state.value for state in JobState if not state.finished)

# One move per VM, where it cannot race: the database refuses a second unfinished job
# for one VM UUID, whichever ferry server (all sharing one PostgreSQL) inserts it.
one_move_per_vm = Index(
    "jobs_one_move_per_vm", jobs_table.c.vm_uuid, unique=True,
    sqlite_where=jobs_table.c.state.in_(UNFINISHED),
    postgresql_where=jobs_table.c.state.in_(UNFINISHED),
)

events_table = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("at", Float, nullable=False),
    Column("phase", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", Text, nullable=False, default="{}"),
)

# The ferry servers that share this database, each under an id of its own.
servers_table = Table(
    "servers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("stopped_at", Float),
)

# What a job made or holds on a host (a disk, a domain, a file), so that whoever
# finishes or cleans up after the job knows it from the database.
job_resources_table = Table(
    "job_resources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("host", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("pool", String(255)),
    Column("name", String(512), nullable=False),
    Column("path", Text),
    Column("state", String(16), nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Who may use the API, with which role (ferry.auth.roles.Role).
users_table = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)

# API tokens: only a hash of each (ferry.auth.tokens); the secret is shown once.
tokens_table = Table(
    "tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("label", String(255), nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

# Every change request made of the API, allowed or refused (ferry.auth.model.AuditEntry).
audit_table = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("user_name", String(64), nullable=False),
    Column("token_id", String(16)),
    Column("action", String(64), nullable=False),
    Column("target", String(255)),
    Column("method", String(8), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("address", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("outcome", Text, nullable=False, server_default=""),
    Index("audit_by_user", "user_name", "at"),
)
