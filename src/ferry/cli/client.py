"""The CLI's only way to reach ferry: a typed HTTP client of the REST API.

Responses are parsed with the API's own schemas, so a field renamed on one
side breaks loudly in the tests instead of silently in the output.
"""

from __future__ import annotations

import ssl
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from ferry import config
from ferry.api.schemas import (
    AuditOut,
    CheckOut,
    ClusterOut,
    DatastoreOut,
    EvcReportOut,
    FindingOut,
    HostOut,
    InventoryOut,
    JobOut,
    NetworkOut,
    PolicyChoiceOut,
    PolicyOut,
    ServerOut,
    TokenCreated,
    TokenOut,
    UserOut,
    VMOut,
)
from ferry.errors import ConfigError, FerryError, InputError

API = "/api/v1"
M = TypeVar("M", bound=BaseModel)

# Creating a VM or refreshing many hosts does real IO on the server; only the
# connect phase should fail fast.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


def _seg(value: str) -> str:
    # A name with "/" or "?" must stay one path segment, not reroute the request.
    return quote(value, safe="")


def _tls_context(url: str) -> ssl.SSLContext | None:
    """How an https server's certificate is verified: against FERRY_CA_FILE, else the
    system's store. Always verified: there is no way to skip it."""
    if not url.lower().startswith("https:"):
        return None
    ca_file = config.ca_file()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"cannot load the CA certificate {ca_file} ({config.CA_FILE_ENV}): "
                       f"{getattr(exc, 'strerror', None) or exc}",
                       ConfigError.exit_code, "ConfigError") from exc


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx error, if the connection failed in TLS."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ApiError(Exception):
    """An error the server reported, or the failure to reach it at all."""

    def __init__(
        self,
        message: str,
        exit_code: int,
        type_name: str = "",
        findings: list[FindingOut] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.type_name = type_name
        self.findings = findings or []
        self.http_status = http_status


class FerryClient:
    """Talks to ``config.server_url()`` with ``config.read_token()``.

    Tests pass ``http`` (e.g. a ``fastapi.testclient.TestClient``, which is an
    ``httpx.Client``) or a ``transport`` such as ``httpx.MockTransport``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.token = token if token is not None else config.read_token()
        if http is not None:
            self._http = http
        else:
            url = base_url or config.server_url()
            self._http = httpx.Client(
                base_url=url,
                transport=transport,
                timeout=DEFAULT_TIMEOUT,
                verify=_tls_context(url) or True,
            )
        self.base_url = str(self._http.base_url)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ transport
    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            resp = self._http.request(method, API + path, json=json, params=params, headers=headers)
        except httpx.ConnectError as exc:
            if (failure := _tls_failure(exc)) is not None:
                raise self._tls_error(failure) from exc
            raise ApiError(
                f"cannot reach the ferry server at {self.base_url} ({exc}); "
                "start it with `ferry serve` or point FERRY_URL at it",
                ConfigError.exit_code,
                "ConnectionError",
            ) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(
                f"the ferry server at {self.base_url} did not answer in time ({exc})",
                FerryError.exit_code,
                "Timeout",
            ) from exc
        except httpx.HTTPError as exc:
            hint = ("; if it serves HTTPS, FERRY_URL must start with https://"
                    if isinstance(exc, httpx.RemoteProtocolError)
                    and self._http.base_url.scheme == "http" else "")
            raise ApiError(
                f"talking to the ferry server at {self.base_url} failed: {exc}{hint}",
                FerryError.exit_code,
                "HTTPError",
            ) from exc
        if resp.is_error:
            raise self._decode_error(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def _tls_error(self, failure: ssl.SSLError) -> ApiError:
        if isinstance(failure, ssl.SSLCertVerificationError):
            trusted = config.ca_file() or "the system's CA store"
            return ApiError(
                f"refusing the ferry server at {self.base_url}: its certificate cannot be "
                f"verified ({failure.verify_message}) against {trusted}; set "
                f"{config.CA_FILE_ENV} to the CA certificate that signed the server's",
                ConfigError.exit_code, "CertificateError")
        return ApiError(
            f"the TLS handshake with the ferry server at {self.base_url} failed "
            f"({failure.reason or failure}); is it serving HTTPS on that port?",
            ConfigError.exit_code, "TLSError")

    def _decode_error(self, resp: httpx.Response) -> ApiError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        status = resp.status_code
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            message = str(err.get("message") or f"HTTP {status}")
            if status == 401 and not self.token:
                message = (
                    "no API token: set FERRY_TOKEN or make FERRY_HOME/token readable "
                    "(`ferry serve` writes it)"
                )
            findings = [FindingOut.model_validate(f) for f in err.get("findings") or ()]
            return ApiError(
                message,
                int(err.get("exit_code") or FerryError.exit_code),
                str(err.get("type") or ""),
                findings,
                status,
            )
        if isinstance(body, dict) and "detail" in body:
            # A plain FastAPI error (e.g. from a proxy or an older server).
            detail = body["detail"]
            if isinstance(detail, list):
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}"
                    for d in detail
                    if isinstance(d, dict)
                )
            code = InputError.exit_code if 400 <= status < 500 else FerryError.exit_code
            return ApiError(str(detail), code, "HTTPError", None, status)
        text = resp.text.strip()[:200] or resp.reason_phrase
        return ApiError(f"HTTP {status}: {text}", FerryError.exit_code, "HTTPError", None, status)

    @staticmethod
    def _one(model: type[M], data: Any) -> M:
        return model.model_validate(data)

    @staticmethod
    def _many(model: type[M], data: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]

    # ---------------------------------------------------------------- hosts
    def list_hosts(self) -> list[HostOut]:
        return self._many(HostOut, self._request("GET", "/hosts"))

    def add_host(self, name: str, uri: str, migration_address: str | None = None) -> HostOut:
        body = {"name": name, "uri": uri, "migration_address": migration_address}
        return self._one(HostOut, self._request("POST", "/hosts", json=body))

    def enter_maintenance(self, name: str) -> JobOut:
        return self._one(JobOut, self._request("POST", f"/hosts/{_seg(name)}/maintenance/enter"))

    def exit_maintenance(self, name: str) -> HostOut:
        return self._one(HostOut, self._request("POST", f"/hosts/{_seg(name)}/maintenance/exit"))

    def update_host(self, name: str, **changes: Any) -> HostOut:
        return self._one(HostOut, self._request("PATCH", f"/hosts/{_seg(name)}", json=changes))

    def check(self, vm: str, **where: Any) -> CheckOut:
        return self._one(CheckOut, self._request("POST", "/checks", json={"vm": vm, **where}))

    def remove_host(self, name: str) -> None:
        self._request("DELETE", f"/hosts/{_seg(name)}")

    # ------------------------------------------------------------ clusters
    def list_clusters(self) -> list[ClusterOut]:
        return self._many(ClusterOut, self._request("GET", "/clusters"))

    def create_cluster(self, name: str) -> ClusterOut:
        return self._one(ClusterOut, self._request("POST", "/clusters", json={"name": name}))

    def delete_cluster(self, name: str) -> None:
        self._request("DELETE", f"/clusters/{_seg(name)}")

    def evc_report(self, cluster: str) -> EvcReportOut:
        return self._one(EvcReportOut, self._request("GET", f"/clusters/{_seg(cluster)}/evc"))

    def enable_evc(self, cluster: str, mode: str) -> EvcReportOut:
        return self._one(EvcReportOut, self._request(
            "PUT", f"/clusters/{_seg(cluster)}/evc", json={"mode": mode}))

    def disable_evc(self, cluster: str) -> EvcReportOut:
        return self._one(EvcReportOut, self._request("DELETE", f"/clusters/{_seg(cluster)}/evc"))

    def add_cluster_host(self, cluster: str, host: str) -> ClusterOut:
        return self._one(ClusterOut, self._request(
            "POST", f"/clusters/{_seg(cluster)}/hosts", json={"host": host}))

    def remove_cluster_host(self, cluster: str, host: str) -> ClusterOut:
        return self._one(ClusterOut, self._request(
            "DELETE", f"/clusters/{_seg(cluster)}/hosts/{_seg(host)}"))

    def refresh(self, host: str | None = None) -> InventoryOut:
        params = {"host": host} if host else None
        return self._one(InventoryOut, self._request("POST", "/refresh", params=params))

    # ------------------------------------------------------------ inventory
    def list_vms(self) -> list[VMOut]:
        return self._many(VMOut, self._request("GET", "/vms"))

    def get_vm(self, name: str) -> VMOut:
        return self._one(VMOut, self._request("GET", f"/vms/{_seg(name)}"))

    def create_vm(self, **fields: Any) -> VMOut:
        return self._one(VMOut, self._request("POST", "/vms", json=fields))

    def power(self, name: str, action: str) -> VMOut:
        data = self._request("POST", f"/vms/{_seg(name)}/power", json={"action": action})
        return self._one(VMOut, data)

    def delete_vm(self, name: str) -> None:
        self._request("DELETE", f"/vms/{_seg(name)}")

    def list_datastores(self) -> list[DatastoreOut]:
        return self._many(DatastoreOut, self._request("GET", "/datastores"))

    def list_networks(self) -> list[NetworkOut]:
        return self._many(NetworkOut, self._request("GET", "/networks"))

    # ------------------------------------------------------------ migration
    def migrate(self, vm: str, host: str | None, datastore: str | None = None,
                disk_format: str = "same", disks: list[str] | None = None,
                cold: bool = False, policy: str | None = None,
                bandwidth_mibps: int | None = None) -> JobOut:
        body = {"vm": vm, "host": host, "datastore": datastore, "disk_format": disk_format,
                "disks": disks or [], "cold": cold, "policy": policy,
                "bandwidth_mibps": bandwidth_mibps}
        return self._one(JobOut, self._request("POST", "/migrations", json=body))

    def list_policies(self) -> list[PolicyOut]:
        return self._many(PolicyOut, self._request("GET", "/policies"))

    def set_cluster_policy(self, cluster: str, policy: str | None) -> ClusterOut:
        return self._one(ClusterOut, self._request(
            "PUT", f"/clusters/{_seg(cluster)}/policy", json={"policy": policy}))

    def vm_policy(self, vm: str) -> PolicyChoiceOut:
        return self._one(PolicyChoiceOut, self._request("GET", f"/vms/{_seg(vm)}/policy"))

    def set_vm_policy(self, vm: str, policy: str | None) -> PolicyChoiceOut:
        return self._one(PolicyChoiceOut, self._request(
            "PUT", f"/vms/{_seg(vm)}/policy", json={"policy": policy}))

    def list_jobs(self, limit: int = 100) -> list[JobOut]:
        return self._many(JobOut, self._request("GET", "/jobs", params={"limit": limit}))

    def get_job(self, job_id: str) -> JobOut:
        return self._one(JobOut, self._request("GET", f"/jobs/{_seg(job_id)}"))

    def cancel_job(self, job_id: str) -> JobOut:
        return self._one(JobOut, self._request("POST", f"/jobs/{_seg(job_id)}/cancel"))

    def list_servers(self) -> list[ServerOut]:
        return self._many(ServerOut, self._request("GET", "/servers"))

    # ------------------------------------------------- users, tokens, audit
    def list_users(self) -> list[UserOut]:
        return self._many(UserOut, self._request("GET", "/users"))

    def add_user(self, name: str, role: str) -> UserOut:
        return self._one(UserOut, self._request("POST", "/users",
                                                json={"name": name, "role": role}))

    def remove_user(self, name: str) -> None:
        self._request("DELETE", f"/users/{_seg(name)}")

    def list_tokens(self, user: str | None = None) -> list[TokenOut]:
        params = {"user": user} if user else None
        return self._many(TokenOut, self._request("GET", "/tokens", params=params))

    def create_token(self, user: str | None = None, label: str = "",
                     expires_days: int | None = None) -> TokenCreated:
        body = {"user": user, "label": label, "expires_days": expires_days}
        return self._one(TokenCreated, self._request("POST", "/tokens", json=body))

    def revoke_token(self, token_id: str) -> TokenOut:
        return self._one(TokenOut, self._request("DELETE", f"/tokens/{_seg(token_id)}"))

    def audit(self, user: str | None = None, since: float | None = None,
              limit: int = 100) -> list[AuditOut]:
        params: dict[str, Any] = {"limit": limit}
        if user:
            params["user"] = user
        if since is not None:
            params["since"] = since
        return self._many(AuditOut, self._request("GET", "/audit", params=params))
