"""Assembles and runs the control plane: store, host connector, engine, REST API.

On a machine that runs the lab, the server also runs the lab's heartbeat
collector (it listens on the lab's Production network), so migration reports
carry the downtime the VM's peers saw; elsewhere it runs without one.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import uvicorn

from ferry import config
from ferry.api import tls
from ferry.api.app import create_app
from ferry.auth.accounts import Accounts
from ferry.engine.controlplane import ControlPlane
from ferry.errors import FerryError
from ferry.lab.collector import HeartbeatCollector
from ferry.lab.vms import LabVMFactory
from ferry.store.accounts import AccountRecords
from ferry.store.db import Store
from ferry.virt.libvirt_host import open_host

GRACEFUL_SHUTDOWN_S = 3  # then open connections (the console's streams) are closed

def lab_collector() -> HeartbeatCollector | None:
    """The lab's collector, when this machine has the lab's Production network."""
    from ferry.lab.lab import load_state

    if load_state() is None:
        return None
    collector = HeartbeatCollector()
    try:
        collector.start()
    except FerryError:
        return None
    return collector


def lab_domain_type() -> str | None:
    from ferry.lab.lab import load_state

    state = load_state()
    if state is None:
        return None
    return "kvm" if state.accel == "kvm" else "qemu"


def open_accounts(store: Store) -> Accounts:
    """The users and tokens of ``store``'s database. A database without users (a new
    install, or one from before users) gets user admin, whose token is the install's
    token file (made now if missing): the local CLI, which reads that file, keeps working."""
    accounts = Accounts(AccountRecords(store.engine))
    accounts.adopt_first_token(config.ensure_token())
    return accounts


@dataclass
class Server:
    plane: ControlPlane
    collector: HeartbeatCollector | None
    uvicorn_server: uvicorn.Server
    thread: threading.Thread | None = None

    def start_in_background(self) -> None:
        self.thread = threading.Thread(target=self.uvicorn_server.run, name="ferry-api",
                                       daemon=True)
        self.thread.start()
        while not self.uvicorn_server.started:
            if not self.thread.is_alive():
                raise FerryError("the ferry API server failed to start (is the port in use?)")
            self.thread.join(0.05)

    def stop(self) -> None:
        self.uvicorn_server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.plane.close()
        if self.collector is not None:
            self.collector.stop()


def build_server(settings: config.ServerSettings | None = None) -> Server:
    settings = settings or config.ServerSettings.from_env()
    https = tls.server_tls(settings)  # before anything starts: a refusal leaves nothing behind
    config.ferry_home().mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    accounts = open_accounts(store)
    collector = lab_collector()
    # VMs are made from the lab's guest image: the only image ferry ships.
    plane = ControlPlane(store, open_host, heartbeat=collector,
                         guest_domain_type=lab_domain_type(), vm_factory=LabVMFactory(),
                         server_name=f"{socket.gethostname()}:{settings.port}",
                         postcopy_recovery_s=settings.postcopy_recovery_s)
    try:
        plane.refresh()
    except FerryError:
        pass  # a host that is down shows as disconnected in the inventory
    app = create_app(plane, accounts)
    uv_config = uvicorn.Config(app, host=settings.listen, port=settings.port,
                               log_level="warning", access_log=False,
                               # the console's event streams never end by themselves
                               timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                               ssl_certfile=https.cert if https else None,
                               ssl_keyfile=https.key if https else None)
    return Server(plane, collector, uvicorn.Server(uv_config))


def serve(settings: config.ServerSettings | None = None) -> None:
    server = build_server(settings)
    try:
        server.uvicorn_server.run()
    finally:
        server.plane.close()
        if server.collector is not None:
            server.collector.stop()
