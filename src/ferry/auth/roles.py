"""Roles and the role each API route needs: the whole access policy, as one table.

A route missing from :data:`ROUTES` is refused to everyone (a unit test checks
that every route of the app is in the table), so a new endpoint is closed until
someone decides who may call it. Paths are the app's route templates without
the ``/api/v1`` prefix; ``/metrics``, the one guarded route outside it, is here as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"  # reads everything, changes nothing
    OPERATOR = "operator"  # runs the fleet: moves, power, VMs, maintenance, jobs
    ADMIN = "admin"  # everything: hosts, clusters, users, every user's tokens

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Each role may do what the roles below it may."""
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Rule:
    """What a route needs, and how the audit trail names what it does."""

    role: Role
    action: str  # the audit trail's name for it: "migration.start"
    doing: str  # the refusal's words: "user bob has role viewer; {doing} needs role operator"
    target: str | None = None  # where the object is: "path:NAME", "body:NAME" or "query:NAME"
    own: bool = False  # any user may do it for their own tokens; for another's, admin


def _read(what: str, target: str | None = None) -> Rule:
    return Rule(Role.VIEWER, what.replace(" ", "."), f"reading {what}", target)


ROUTES: dict[tuple[str, str], Rule] = {
    # hosts and clusters: the fleet's shape is the admin's
    ("GET", "/hosts"): _read("hosts"),
    ("POST", "/hosts"): Rule(Role.ADMIN, "host.add", "adding a host", "body:name"),
    ("DELETE", "/hosts/{name}"): Rule(Role.ADMIN, "host.remove", "removing a host", "path:name"),
    ("PATCH", "/hosts/{name}"): Rule(Role.ADMIN, "host.set", "changing a host's settings",
                                     "path:name"),
    ("POST", "/hosts/{name}/maintenance/enter"): Rule(
        Role.OPERATOR, "host.maintenance.enter", "putting a host in maintenance", "path:name"),
    ("POST", "/hosts/{name}/maintenance/exit"): Rule(
        Role.OPERATOR, "host.maintenance.exit", "taking a host out of maintenance",
        "path:name"),
    ("GET", "/clusters"): _read("clusters"),
    ("POST", "/clusters"): Rule(Role.ADMIN, "cluster.create", "creating a cluster", "body:name"),
    ("DELETE", "/clusters/{name}"): Rule(Role.ADMIN, "cluster.delete", "deleting a cluster",
                                         "path:name"),
    ("POST", "/clusters/{name}/hosts"): Rule(Role.ADMIN, "cluster.host.add",
                                             "adding a host to a cluster", "path:name"),
    ("DELETE", "/clusters/{name}/hosts/{host}"): Rule(
        Role.ADMIN, "cluster.host.remove", "removing a host from a cluster", "path:name"),
    ("PUT", "/clusters/{name}/policy"): Rule(Role.ADMIN, "cluster.policy.set",
                                             "setting a cluster's default policy", "path:name"),
    ("GET", "/clusters/{name}/evc"): _read("cluster evc", "path:name"),
    ("PUT", "/clusters/{name}/evc"): Rule(Role.ADMIN, "cluster.evc.enable",
                                          "enabling EVC on a cluster", "path:name"),
    ("DELETE", "/clusters/{name}/evc"): Rule(Role.ADMIN, "cluster.evc.disable",
                                             "disabling EVC on a cluster", "path:name"),
    ("POST", "/refresh"): Rule(Role.OPERATOR, "inventory.refresh", "refreshing the inventory",
                               "query:host"),
    # VMs and moves: the operator's daily work
    ("GET", "/vms"): _read("vms"),
    ("GET", "/vms/{name}"): _read("vm", "path:name"),
    ("GET", "/vms/{name}/policy"): _read("vm policy", "path:name"),
    ("PUT", "/vms/{name}/policy"): Rule(Role.OPERATOR, "vm.policy.set",
                                        "setting a VM's default policy", "path:name"),
    ("POST", "/vms"): Rule(Role.OPERATOR, "vm.create", "creating a VM", "body:name"),
    ("POST", "/vms/{name}/power"): Rule(Role.OPERATOR, "vm.power", "powering a VM",
                                        "path:name"),
    ("DELETE", "/vms/{name}"): Rule(Role.OPERATOR, "vm.delete", "deleting a VM", "path:name"),
    ("GET", "/datastores"): _read("datastores"),
    ("GET", "/networks"): _read("networks"),
    # A pre-flight report changes nothing: a viewer may ask whether a move would pass.
    ("POST", "/checks"): Rule(Role.VIEWER, "migration.check", "checking a move", "body:vm"),
    ("POST", "/migrations"): Rule(Role.OPERATOR, "migration.start", "starting a migration",
                                  "body:vm"),
    ("GET", "/jobs"): _read("jobs"),
    ("GET", "/jobs/{job_id}"): _read("job", "path:job_id"),
    ("POST", "/jobs/{job_id}/cancel"): Rule(Role.OPERATOR, "job.cancel", "cancelling a job",
                                            "path:job_id"),
    ("GET", "/servers"): _read("servers"),
    ("GET", "/policies"): _read("policies"),
    # the console: who a token is, and the inventory and jobs pushed as they change
    ("GET", "/session"): _read("session"),
    ("GET", "/events"): _read("events"),
    # Prometheus' scrape: the fleet's figures, read like the jobs and hosts they come from.
    ("GET", "/metrics"): _read("metrics"),
    # users, tokens and the audit trail
    ("GET", "/users"): Rule(Role.ADMIN, "users.list", "listing users"),
    ("POST", "/users"): Rule(Role.ADMIN, "user.add", "adding a user", "body:name"),
    ("DELETE", "/users/{name}"): Rule(Role.ADMIN, "user.remove", "removing a user",
                                      "path:name"),
    ("GET", "/tokens"): Rule(Role.VIEWER, "tokens.list", "listing tokens", "query:user",
                             own=True),
    ("POST", "/tokens"): Rule(Role.VIEWER, "token.create", "creating a token", "body:user",
                              own=True),
    ("DELETE", "/tokens/{token_id}"): Rule(Role.VIEWER, "token.revoke", "revoking a token",
                                           "path:token_id", own=True),
    ("GET", "/audit"): Rule(Role.ADMIN, "audit.list", "reading the audit trail"),
}

# Requests of these methods change something (or ask to): each is in the audit trail.
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (``path``: its template without the API prefix); None: unknown."""
    return ROUTES.get((method.upper(), path))


def refusal(user: str, role: Role, rule: Rule) -> str:
    return f"user {user} has role {role.value}; {rule.doing} needs role {rule.role.value}"


def may_act_for(user: str, role: Role, owner: str) -> bool:
    """Whether ``user`` may list, create or revoke ``owner``'s tokens."""
    return user == owner or role is Role.ADMIN


def others_refusal(user: str, role: Role, rule: Rule) -> str:
    return (f"user {user} has role {role.value}; {rule.doing} of another user needs role "
            f"{Role.ADMIN.value}")
