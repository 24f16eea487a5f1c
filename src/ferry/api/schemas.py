"""The REST API's wire format: Pydantic models mirroring :mod:`ferry.model`.

The response models read the frozen dataclasses through ``from_attributes``
(see :func:`to_schema`), so derived properties such as ``VM.memory_mib`` or
``DatastoreView.shared`` reach clients without a converter per type. This
module imports only Pydantic and ferry's own validation (names are judged by
:func:`ferry.validate.name`, one rule and one sentence), so the CLI can parse
responses with the very same models without pulling in FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ferry import reports, validate
from ferry.auth.roles import Role
from ferry.auth.tokens import MAX_DAYS
from ferry.errors import InputError
from ferry.job import JobKind, JobState, Phase, ResourceKind, ResourceState
from ferry.model import (
    DEFAULT_SETTINGS,
    MAX_BANDWIDTH_MIBPS,
    MAX_MAX_MIGRATIONS,
    MAX_MEMORY_LIMIT_MIB,
    MIN_BANDWIDTH_MIBPS,
    MIN_MAX_MIGRATIONS,
    MIN_MEMORY_LIMIT_MIB,
    VMState,
)
from ferry.reports import Progress, Report

S = TypeVar("S", bound=BaseModel)

# The error type of a name refused by validate.name (the API's error envelope
# shows its sentence as it is, without a regular expression).
NAME_ERROR = "ferry_name"


def _name_of(kind: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            return validate.name(kind, value)
        except InputError as exc:
            # "{reason}" and a context: the template is formatted, the user's text is not.
            raise PydanticCustomError(NAME_ERROR, "{reason}", {"reason": exc.message}) from None
    return check


# validate.name judges; the schema still publishes the pattern to OpenAPI clients.
_NAME_SCHEMA = WithJsonSchema({"type": "string", "pattern": validate.NAME_PATTERN,
                               "description": validate.NAME_RULE})
VMName = Annotated[str, AfterValidator(_name_of("VM")), _NAME_SCHEMA]
HostName = Annotated[str, AfterValidator(_name_of("host")), _NAME_SCHEMA]
ClusterName = Annotated[str, AfterValidator(_name_of("cluster")), _NAME_SCHEMA]
CpuModelName = Annotated[str, AfterValidator(_name_of("CPU model")), _NAME_SCHEMA]


def _user_name(value: str) -> str:
    try:
        return validate.user_name(value)
    except InputError as exc:
        raise PydanticCustomError(NAME_ERROR, "{reason}", {"reason": exc.message}) from None


UserName = Annotated[str, AfterValidator(_user_name), WithJsonSchema(
    {"type": "string", "pattern": validate.USER_PATTERN, "description": validate.USER_RULE})]


def _label(value: str) -> str:
    if any(not c.isprintable() for c in value):
        raise ValueError("a token label must be printable text (no control characters)")
    return value


TokenLabel = Annotated[str, Field(max_length=100), AfterValidator(_label)]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def to_schema(schema: type[S], obj: object) -> S:
    """Any ferry dataclass (nested ones included) to its response model."""
    return schema.model_validate(obj, from_attributes=True)


# ---------------------------------------------------------------- responses


class HostOut(Out):
    name: str
    uri: str
    migration_address: str | None = DEFAULT_SETTINGS.migration_address
    migration_enabled: bool = DEFAULT_SETTINGS.migration_enabled
    maintenance: bool = DEFAULT_SETTINGS.maintenance
    max_migrations: int = DEFAULT_SETTINGS.max_migrations
    memory_limit_mib: int | None = DEFAULT_SETTINGS.memory_limit_mib
    migration_bandwidth_mibps: int | None = DEFAULT_SETTINGS.migration_bandwidth_mibps
    allow_cleartext_migration: bool = DEFAULT_SETTINGS.allow_cleartext_migration
    cluster: str | None = None
    connected: bool = False
    error: str | None = None
    hostname: str | None = None
    host_uuid: str | None = None
    cpu_vendor: str | None = None
    cpu_model: str | None = None
    cpus: int = 0
    memory_mib: int = 0
    free_memory_mib: int = 0
    libvirt_version: str | None = None
    hypervisor_version: str | None = None


class DiskOut(Out):
    target: str
    device: str
    source_type: str
    source: str | None
    driver_format: str | None = None
    transient: bool = False
    readonly: bool = False
    backing_store: str | None = None


class InterfaceOut(Out):
    mac: str
    kind: str
    network: str | None
    portgroup: str | None = None
    model: str | None = None


class CpuAffinityOut(Out):
    vcpupin: list[str] = []
    vcpu_cpuset: str | None = None
    emulatorpin: str | None = None
    pinned: bool = False


class MoveHoldOut(Out):
    """The move a VM is in: ferry's job (``job_id``), or a migration ferry did not start."""

    dest_host: str | None = None
    job_id: str | None = None
    kind: str | None = None
    state: str | None = None
    by_ferry: bool = False


class VMOut(Out):
    name: str
    uuid: str
    host: str
    state: VMState
    memory_kib: int
    memory_mib: int
    vcpus: int
    persistent: bool = True
    disks: list[DiskOut] = []
    interfaces: list[InterfaceOut] = []
    cpu_mode: str | None = None
    cpu_model: str | None = None
    affinity: CpuAffinityOut = CpuAffinityOut()
    kernel: str | None = None
    initrd: str | None = None
    domain_type: str = "qemu"
    snapshot_count: int = 0
    lab_address: str | None = None
    # libvirt's word: "outgoing" (a migration's source) or "incoming" (its destination's copy)
    migration: Literal["incoming", "outgoing"] | None = None
    moving: MoveHoldOut | None = None
    current: bool = True  # False: its host does not answer; the host's last word


class PoolOut(Out):
    host: str
    name: str
    pool_type: str
    path: str | None
    active: bool
    capacity: int
    allocation: int
    available: int
    datastore: str | None = None


class DatastoreOut(Out):
    name: str
    hosts: list[str]
    shared: bool
    pools: list[PoolOut]


class NetworkOut(Out):
    host: str
    name: str
    bridge: str | None
    forward_mode: str | None
    active: bool
    portgroups: list[str] = []
    internal_only: bool = False


class InventoryOut(Out):
    hosts: dict[str, HostOut]
    vms: dict[str, VMOut]
    pools: list[PoolOut]
    networks: list[NetworkOut]


class JobEventOut(Out):
    at: float
    phase: Phase
    message: str
    data: dict[str, Any] = {}


class JobResourceOut(Out):
    """What the job created (or frees) on a host, and what became of it."""

    host: str
    kind: ResourceKind
    name: str
    state: ResourceState
    pool: str | None = None
    path: str | None = None


class JobOut(Out):
    id: str
    kind: JobKind
    vm: str
    source_host: str
    dest_host: str | None
    state: JobState
    phase: Phase
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    # The types of :mod:`ferry.reports`, the job's kind's (JobKind.report_type).
    progress: Progress | None = None
    report: Report | None = None
    events: list[JobEventOut] = []
    vm_uuid: str | None = None
    owner: str | None = None  # the server that runs it
    cancel_requested: bool = False
    parent_id: str | None = None  # the evacuation that started it
    slot_hosts: list[str] = []
    resources: list[JobResourceOut] = []
    requested_by: str | None = None  # the user who asked (None: before users existed)

    @field_validator("progress", "report", mode="before")
    @classmethod
    def _of_its_kind(cls, value: object, info: ValidationInfo) -> object:
        """Read as the job's kind writes it: the kind, not the keys, says which type."""
        kind = info.data.get("kind")
        if not isinstance(kind, JobKind):
            return value
        return reports.load(kind.report_type if info.field_name == "report"
                            else kind.progress_type, value)


class PolicyStepOut(Out):
    stalls: int
    action: str
    value: int = 0


class PolicyOut(Out):
    """A convergence policy a live move can run with (ferry.engine.policy)."""

    name: str
    description: str
    initial_downtime_ms: int
    auto_converge: bool
    allow_postcopy: bool
    steps: list[PolicyStepOut]
    max_seconds: int
    throttle_initial_pct: int | None = None
    throttle_increment_pct: int | None = None
    predict: bool = False
    postcopy_at_any_risk: bool = False


class PolicyChoiceOut(Out):
    """The convergence policy a live move of a VM runs with when none is asked."""

    vm: str
    default: str | None = None
    policy: str
    why: str


class ServerOut(Out):
    id: str
    name: str
    started_at: float
    seen_at: float
    alive: bool
    jobs: int = 0


class FindingOut(Out):
    code: str
    status: str
    message: str
    remedy: str = ""
    objects: dict[str, str] = {}


class CheckOut(BaseModel):
    """A pre-flight report: every requirement's row, and whether the move may go ahead."""

    vm: str
    kind: str
    allowed: bool
    errors: int
    warnings: int
    findings: list[FindingOut]


class ErrorDetail(BaseModel):
    type: str
    message: str
    exit_code: int
    findings: list[FindingOut] = []


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {...}}`` (422 also keeps FastAPI's ``detail``)."""

    error: ErrorDetail


class Health(BaseModel):
    status: str = "ok"


# ----------------------------------------------------------------- requests


class EvcModeOut(Out):
    requested: str
    model: str
    vendor: str | None = None
    cpu_xml: str
    features: list[str] = []
    enabled_at: float = 0.0


class ClusterOut(Out):
    name: str
    hosts: list[str] = []
    created_at: float = 0.0
    evc: EvcModeOut | None = None
    migration_policy: str | None = None


class EvcHostOut(Out):
    host: str
    model: str | None = None
    vendor: str | None = None
    hidden: list[str] = []
    missing: list[str] = []
    error: str | None = None


class EvcReportOut(Out):
    cluster: str
    mode: EvcModeOut | None = None
    hosts: list[EvcHostOut] = []
    warnings: list[str] = []
    not_at_mode: list[str] = []


class In(BaseModel):
    """A request body: exactly what its schema publishes, no more, no other types.

    Strict: ``"512"`` is not 512 and ``0`` is not false, so a client's mistake
    is an error that names the field, not a guess. Unknown fields are refused,
    so a misspelt setting is not silently ignored.
    """

    model_config = ConfigDict(strict=True, extra="forbid")


class EvcEnable(In):
    # "auto", or a CPU model as libvirt names it (Westmere, EPYC-Rome, ...)
    mode: CpuModelName = "auto"


class ClusterCreate(In):
    name: ClusterName


class ClusterHostAdd(In):
    host: HostName


class HostCreate(In):
    name: HostName
    uri: str = Field(min_length=1, max_length=1024)
    migration_address: str | None = Field(default=None, max_length=255)


class VMCreate(In):
    name: VMName
    host: str = Field(min_length=1)
    datastore: str = Field(min_length=1)
    memory_mib: int = Field(default=512, ge=64, le=65536)
    vcpus: int = Field(default=1, ge=1, le=64)
    disk_mib: int = Field(default=256, ge=0, le=1048576)
    disk_format: Literal["qcow2", "raw"] = "qcow2"
    heartbeat: bool = True
    memory_workload_mib: int = Field(default=0, ge=0, le=65536)
    disk_writer: bool = False
    network: str = Field(default="Production", min_length=1)
    start: bool = True


class PowerRequest(In):
    action: Literal["on", "off", "force-off"]


class MigrationCreate(In):
    vm: str = Field(min_length=1, description="the VM's name, or its UUID")
    host: str | None = Field(default=None, min_length=1)
    datastore: str | None = Field(default=None, min_length=1)
    disk_format: Literal["same", "thin", "thick-lazy", "thick-eager"] = "same"
    disks: list[str] = []
    cold: bool = False
    policy: str | None = Field(default=None, min_length=1, max_length=64,
                               description="convergence policy of a live move between hosts "
                               "(GET /policies); none: the VM's default, else its cluster's, "
                               "else ferry's (auto)")
    bandwidth_mibps: int | None = Field(
        default=None, ge=MIN_BANDWIDTH_MIBPS, le=MAX_BANDWIDTH_MIBPS,
        description="MiB/s a live move between hosts may use; the hosts' own limits "
        "still apply (the lowest wins)")


class PolicyDefault(In):
    policy: str | None = Field(default=None, min_length=1, max_length=64,
                               description="the default convergence policy (GET /policies); "
                               "null: none of its own")


class HostUpdate(In):
    migration_enabled: bool | None = None
    migration_address: str | None = Field(default=None, max_length=255)
    migration_interface: str | None = Field(default=None, max_length=15)
    migration_network_isolated: bool | None = None
    allow_cleartext_migration: bool | None = None
    max_migrations: int | None = Field(default=None, ge=MIN_MAX_MIGRATIONS,
                                       le=MAX_MAX_MIGRATIONS)
    memory_limit_mib: int | None = Field(default=None, ge=MIN_MEMORY_LIMIT_MIB,
                                         le=MAX_MEMORY_LIMIT_MIB)
    clear_memory_limit: bool = False
    migration_bandwidth_mibps: int | None = Field(default=None, ge=MIN_BANDWIDTH_MIBPS,
                                                  le=MAX_BANDWIDTH_MIBPS)
    clear_migration_bandwidth: bool = False


class CheckCreate(In):
    vm: str = Field(min_length=1, description="the VM's name, or its UUID")
    host: str | None = Field(default=None, min_length=1)
    datastore: str | None = Field(default=None, min_length=1)
    cold: bool = False
    disks: list[str] = []
    disk_format: Literal["same", "thin", "thick-lazy", "thick-eager"] = "same"


# ------------------------------------------------------ users, tokens, audit


class UserOut(Out):
    name: str
    role: Role
    created_at: float


class SessionOut(Out):
    """Who a token is: its user and their role."""

    user: str
    role: Role


class UserCreate(In):
    name: UserName
    role: Role = Field(strict=False)  # strict would take only the enum object, not its name


class TokenOut(Out):
    """A token as listed: never its secret."""

    id: str
    user: str
    label: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None


class TokenCreated(TokenOut):
    """A new token: the only response that carries the token itself."""

    token: str


class TokenCreate(In):
    user: UserName | None = None  # None: the caller's own
    label: TokenLabel = ""
    expires_days: int | None = Field(default=None, ge=1, le=MAX_DAYS,
                                     description="days until it stops working (default 90)")


class AuditOut(Out):
    id: int
    at: float
    user: str
    action: str
    method: str
    path: str
    status: int
    address: str
    target: str | None = None
    token_id: str | None = None
    outcome: str = ""
