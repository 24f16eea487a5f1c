"""ferry's REST API: a thin, authenticated HTTP skin over :class:`FerryService`.

Path functions are plain ``def`` on purpose: every service call does blocking
libvirt IO, and FastAPI runs sync endpoints in its threadpool instead of on
the event loop. All failures leave as one JSON envelope (see ``ErrorBody``)
so the CLI needs a single decoder for every error. Who may call which route is
:mod:`ferry.auth.roles`; the check and the audit trail are :mod:`ferry.api.guard`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ferry.api.accounts import add_account_routes
from ferry.api.guard import AuditTrail, make_authorize, note
from ferry.api.limits import BodyLimit
from ferry.api.live import add_live_routes
from ferry.api.metrics import Metrics, add_metrics_route
from ferry.api.schemas import (
    NAME_ERROR,
    CheckCreate,
    CheckOut,
    ClusterCreate,
    ClusterHostAdd,
    ClusterName,
    ClusterOut,
    DatastoreOut,
    ErrorBody,
    EvcEnable,
    EvcReportOut,
    FindingOut,
    Health,
    HostCreate,
    HostName,
    HostOut,
    HostUpdate,
    InventoryOut,
    JobOut,
    MigrationCreate,
    NetworkOut,
    PolicyChoiceOut,
    PolicyDefault,
    PolicyOut,
    PowerRequest,
    ServerOut,
    VMCreate,
    VMName,
    VMOut,
    to_schema,
)
from ferry.auth.accounts import Accounts
from ferry.auth.model import Principal
from ferry.checks.facts import MoveRequest
from ferry.checks.finding import Status
from ferry.console import mount_console
from ferry.engine.policy import POLICIES
from ferry.errors import ConfigError, FerryError, InputError, NotAuthenticated, RefusedError
from ferry.service import FerryService, HostSettingsUpdate, VMCreateRequest

API_PREFIX = "/api/v1"

# Module level: with postponed annotations FastAPI resolves names in module globals.
HostPath = Annotated[HostName, Path()]
ClusterPath = Annotated[ClusterName, Path()]
# A UUID is a valid name too, so one rule covers both ways of naming a VM.
VMRef = Annotated[VMName, Path(description=(
    "the VM's name, or its UUID (needed when two VMs share the name: a 400 names both)"))]

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, wrong, revoked or expired bearer token"},
    403: {"model": ErrorBody, "description": "The token's user lacks the role the route needs"},
    404: {"model": ErrorBody, "description": "A named object does not exist"},
    409: {"model": ErrorBody, "description": "Refused by pre-flight checks"},
    502: {"model": ErrorBody, "description": "A hypervisor host failed"},
}


def error_body(
    type_name: str, message: str, exit_code: int, findings: list[Any] | None = None
) -> dict[str, Any]:
    detail = {
        "type": type_name,
        "message": message,
        "exit_code": exit_code,
        "findings": [
            to_schema(FindingOut, f).model_dump(mode="json") for f in findings or ()
        ],
    }
    return {"error": detail}


def _exit_code_for_http(status_code: int) -> int:
    # Errors raised by the HTTP layer itself, not by ferry: map them onto the
    # nearest exit code so the CLI still exits meaningfully.
    if status_code == status.HTTP_401_UNAUTHORIZED:
        return ConfigError.exit_code
    if 400 <= status_code < 500:
        return InputError.exit_code
    return FerryError.exit_code


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        if err.get("type") == NAME_ERROR:  # validate.name's sentence names what it refused
            parts.append(str(err.get("msg")))
            continue
        if err.get("type") == "json_invalid":
            at = err.get("loc", ())[-1]
            parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error')}, "
                         f"at character {at})")
            continue
        if tuple(err.get("loc", ())) == ("body",) and isinstance(err.get("input"), bytes):
            # FastAPI parses a body as JSON only when the request says it is JSON.
            parts.append("the body must be a JSON object sent with "
                         "Content-Type: application/json")
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        raw = err.get("loc", ())
        where = ".".join(loc) or ("body" if raw and raw[0] == "body" else "request")
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    if errors and all(err.get("type") == NAME_ERROR for err in errors):
        return "; ".join(parts)
    return "invalid request: " + "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FerryError)
    def ferry_error(request: Request, exc: FerryError) -> JSONResponse:
        note(request, exc.message)
        findings = exc.findings if isinstance(exc, RefusedError) else []
        body = error_body(type(exc).__name__, exc.message, exc.exit_code, findings)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return JSONResponse(status_code=exc.http_status, content=body, headers=headers)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == status.HTTP_404_NOT_FOUND and message == "Not Found":
            # The router's own: name the path (decoded, so "%2e%2e%2f" shows as "../").
            message = f"no API path {request.url.path!r} (see /openapi.json)"
        elif exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            message = f"{request.method} is not allowed on {request.url.path!r}"
        note(request, message)
        body = error_body("HTTPError", message, _exit_code_for_http(exc.status_code))
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Keep FastAPI's "detail" for generic clients; add our envelope for the CLI.
        errors = list(exc.errors())
        message = _validation_message(errors)
        note(request, message)
        body = error_body("ValidationError", message, InputError.exit_code)
        body["detail"] = _jsonable_errors(errors)
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(Exception)
    def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        # No logging here: Starlette re-raises after this response, so the
        # server logs the traceback once.
        body = error_body(
            "InternalError", f"internal error: {type(exc).__name__}: {exc}", FerryError.exit_code
        )
        return JSONResponse(status_code=500, content=body)


def _jsonable_errors(errors: list[Any]) -> list[dict[str, Any]]:
    # Pydantic's "ctx" may hold exception objects that JSON cannot carry, and
    # "input" the raw bytes of a body that was not sent as JSON.
    out = []
    for err in errors:
        item = {k: v for k, v in err.items() if k in ("type", "loc", "msg")}
        if "input" in err:
            value = err["input"]
            item["input"] = (value.decode("utf-8", "replace") if isinstance(value, bytes)
                             else jsonable_encoder(value))
        if "ctx" in err:
            item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
        out.append(item)
    return out


def create_app(service: FerryService, accounts: Accounts) -> FastAPI:
    """The ASGI app; the caller owns ``service`` (and closes it on shutdown).

    ``accounts`` says who each request's token is, and keeps the audit trail.
    """
    authorize = make_authorize(accounts, API_PREFIX)
    # A handler asks who calls with ``caller: Principal = Depends(authorize)``: FastAPI
    # runs ``authorize`` once per request (the router's dependency), and hands its answer.
    caller_of = Depends(authorize)

    app = FastAPI(
        title="ferry",
        version="1",
        summary="Live migration control plane for libvirt/QEMU hosts",
    )
    app.state.service = service
    metrics = Metrics(service)
    app.add_middleware(BodyLimit)
    _install_error_handlers(app)
    app.add_middleware(AuditTrail, accounts=accounts, prefix=API_PREFIX)

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> Health:
        return Health()

    api = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(authorize)], responses=_ERROR_RESPONSES
    )

    # ---------------------------------------------------------------- hosts
    @api.get("/hosts", response_model=list[HostOut], tags=["hosts"])
    def list_hosts() -> list[HostOut]:
        return [to_schema(HostOut, h) for h in service.list_hosts()]

    @api.post(
        "/hosts", response_model=HostOut, status_code=status.HTTP_201_CREATED, tags=["hosts"]
    )
    def add_host(body: HostCreate) -> HostOut:
        host = service.add_host(body.name, body.uri, body.migration_address)
        return to_schema(HostOut, host)

    @api.delete("/hosts/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["hosts"])
    def remove_host(name: HostPath) -> None:
        service.remove_host(name)

    @api.patch("/hosts/{name}", response_model=HostOut, tags=["hosts"])
    def update_host(name: HostPath, body: HostUpdate) -> HostOut:
        return to_schema(HostOut, service.update_host(name, HostSettingsUpdate(
            **body.model_dump())))

    @api.get("/clusters", response_model=list[ClusterOut], tags=["clusters"])
    def list_clusters() -> list[ClusterOut]:
        return [to_schema(ClusterOut, c) for c in service.list_clusters()]

    @api.post("/clusters", response_model=ClusterOut, status_code=status.HTTP_201_CREATED,
              tags=["clusters"])
    def create_cluster(body: ClusterCreate) -> ClusterOut:
        return to_schema(ClusterOut, service.create_cluster(body.name))

    @api.delete("/clusters/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["clusters"])
    def delete_cluster(name: ClusterPath) -> None:
        service.delete_cluster(name)

    @api.post("/clusters/{name}/hosts", response_model=ClusterOut, tags=["clusters"])
    def add_cluster_host(name: ClusterPath, body: ClusterHostAdd) -> ClusterOut:
        return to_schema(ClusterOut, service.add_cluster_host(name, body.host))

    @api.delete("/clusters/{name}/hosts/{host}", response_model=ClusterOut, tags=["clusters"])
    def remove_cluster_host(name: ClusterPath, host: HostPath) -> ClusterOut:
        return to_schema(ClusterOut, service.remove_cluster_host(name, host))

    @api.put("/clusters/{name}/policy", response_model=ClusterOut, tags=["clusters"])
    def set_cluster_policy(name: ClusterPath, body: PolicyDefault) -> ClusterOut:
        return to_schema(ClusterOut, service.set_cluster_policy(name, body.policy))

    @api.get("/clusters/{name}/evc", response_model=EvcReportOut, tags=["clusters"])
    def evc_report(name: ClusterPath) -> EvcReportOut:
        return to_schema(EvcReportOut, service.evc_report(name))

    @api.put("/clusters/{name}/evc", response_model=EvcReportOut, tags=["clusters"])
    def enable_evc(name: ClusterPath, body: EvcEnable) -> EvcReportOut:
        return to_schema(EvcReportOut, service.enable_evc(name, body.mode))

    @api.delete("/clusters/{name}/evc", response_model=EvcReportOut, tags=["clusters"])
    def disable_evc(name: ClusterPath) -> EvcReportOut:
        return to_schema(EvcReportOut, service.disable_evc(name))

    @api.post("/hosts/{name}/maintenance/enter", response_model=JobOut,
              status_code=status.HTTP_202_ACCEPTED, tags=["hosts"])
    def enter_maintenance(name: HostPath, request: Request,
                          caller: Principal = caller_of) -> JobOut:
        job = service.enter_maintenance(name, requested_by=caller.user)
        note(request, f"job {job.id}")
        return to_schema(JobOut, job)

    @api.post("/hosts/{name}/maintenance/exit", response_model=HostOut, tags=["hosts"])
    def exit_maintenance(name: HostPath) -> HostOut:
        return to_schema(HostOut, service.exit_maintenance(name))

    @api.post("/refresh", response_model=InventoryOut, tags=["inventory"])
    def refresh(host: Annotated[str | None, Query()] = None) -> InventoryOut:
        return to_schema(InventoryOut, service.refresh(host))

    # ------------------------------------------------------------ inventory
    @api.get("/vms", response_model=list[VMOut], tags=["vms"])
    def list_vms() -> list[VMOut]:
        return [to_schema(VMOut, vm) for vm in service.list_vms()]

    @api.get("/vms/{name}", response_model=VMOut, tags=["vms"])
    def get_vm(name: VMRef) -> VMOut:
        return to_schema(VMOut, service.get_vm(name))

    @api.get("/vms/{name}/policy", response_model=PolicyChoiceOut, tags=["vms"])
    def vm_policy(name: VMRef) -> PolicyChoiceOut:
        return to_schema(PolicyChoiceOut, service.vm_policy(name))

    @api.put("/vms/{name}/policy", response_model=PolicyChoiceOut, tags=["vms"])
    def set_vm_policy(name: VMRef, body: PolicyDefault) -> PolicyChoiceOut:
        return to_schema(PolicyChoiceOut, service.set_vm_policy(name, body.policy))

    @api.post("/vms", response_model=VMOut, status_code=status.HTTP_201_CREATED, tags=["vms"])
    def create_vm(body: VMCreate) -> VMOut:
        vm = service.create_vm(VMCreateRequest(**body.model_dump()))
        return to_schema(VMOut, vm)

    @api.post("/vms/{name}/power", response_model=VMOut, tags=["vms"])
    def power(name: VMRef, body: PowerRequest) -> VMOut:
        return to_schema(VMOut, service.power(name, body.action))

    @api.delete("/vms/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["vms"])
    def delete_vm(name: VMRef) -> None:
        service.delete_vm(name)

    @api.get("/datastores", response_model=list[DatastoreOut], tags=["inventory"])
    def list_datastores() -> list[DatastoreOut]:
        return [to_schema(DatastoreOut, d) for d in service.list_datastores()]

    @api.get("/networks", response_model=list[NetworkOut], tags=["inventory"])
    def list_networks() -> list[NetworkOut]:
        return [to_schema(NetworkOut, n) for n in service.list_networks()]

    # ------------------------------------------------------------ pre-flight
    @api.post("/checks", response_model=CheckOut, tags=["migrations"])
    def check(body: CheckCreate) -> CheckOut:
        request = MoveRequest(vm=body.vm, dest_host=body.host, dest_datastore=body.datastore,
                              cold=body.cold, disks=tuple(body.disks),
                              disk_format=body.disk_format)
        findings = service.check(request)
        metrics.refused("check", findings)
        errors = sum(1 for f in findings if f.status is Status.ERROR)
        return CheckOut(
            vm=body.vm, kind=request.kind.value, allowed=errors == 0, errors=errors,
            warnings=sum(1 for f in findings if f.status is Status.WARNING),
            findings=[to_schema(FindingOut, f) for f in findings])

    # ------------------------------------------------------------ migration
    @api.post(
        "/migrations",
        response_model=JobOut,
        status_code=status.HTTP_202_ACCEPTED,
        tags=["migrations"],
    )
    def start_migration(body: MigrationCreate, request: Request,
                        caller: Principal = caller_of) -> JobOut:
        try:
            job = service.start_migration(body.vm, body.host, body.datastore, body.disk_format,
                                          tuple(body.disks), body.cold,
                                          requested_by=caller.user, policy=body.policy,
                                          bandwidth_mibps=body.bandwidth_mibps)
        except RefusedError as err:
            metrics.refused("migration", err.findings)
            raise
        note(request, f"job {job.id}")
        return to_schema(JobOut, job)

    @api.get("/policies", response_model=list[PolicyOut], tags=["migrations"])
    def list_policies() -> list[PolicyOut]:
        return [to_schema(PolicyOut, p) for p in POLICIES.values()]

    @api.get("/jobs", response_model=list[JobOut], tags=["jobs"])
    def list_jobs(limit: Annotated[int, Query(ge=1, le=10000)] = 100) -> list[JobOut]:
        return [to_schema(JobOut, j) for j in service.list_jobs(limit)]

    @api.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def get_job(job_id: str) -> JobOut:
        return to_schema(JobOut, service.get_job(job_id))

    @api.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"])
    def cancel_job(job_id: str, request: Request) -> JobOut:
        job = service.cancel_job(job_id)
        note(request, f"job {job.id}: {job.state.value}")
        return to_schema(JobOut, job)

    @api.get("/servers", response_model=list[ServerOut], tags=["servers"])
    def list_servers() -> list[ServerOut]:
        return [to_schema(ServerOut, s) for s in service.list_servers()]

    add_account_routes(api, accounts, authorize)
    add_live_routes(api, service, accounts, authorize)
    app.include_router(api)
    add_metrics_route(app, metrics, authorize)
    mount_console(app)
    return app
