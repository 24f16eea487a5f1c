"""What the CLI prints on a terminal and what it prints to a pipe.

A terminal gets Rich: colour, a progress bar redrawn in place, long cells
wrapped at its width. Anything else gets plain text a script can read; and
``--json`` is exactly the JSON, terminal or not.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from auth_support import admin_accounts
from fastapi.testclient import TestClient
from test_cli import DONE, FINDINGS, PRECOPY, TOKEN, ScriptedService, run

from ferry.api.app import create_app
from ferry.api.schemas import CheckOut, FindingOut, JobOut
from ferry.cli import console, render, render_jobs
from ferry.cli import main as cli
from ferry.cli.client import FerryClient

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG_PATH = "/var/lib/libvirt/images/golden/base-images/2026/ubuntu-24.04-server-base.qcow2"


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a user's shell would."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FerryClient]:
    service = ScriptedService([PRECOPY, PRECOPY, DONE])
    with TestClient(create_app(service, admin_accounts(tmp_path, TOKEN))) as http:
        yield FerryClient(http=http, token=TOKEN)


def _refusal() -> CheckOut:
    return CheckOut(vm="web2", kind="live", allowed=False, errors=1, warnings=0, findings=[
        FindingOut(code="pass.example", status="pass", message="the destination answers"),
        FindingOut(code="storage.chain-outside", status="error",
                   message=f"vda's backing file {LONG_PATH} is outside every datastore",
                   remedy="copy the backing file into a datastore, then rebase vda onto it",
                   objects={"disk": "vda", "file": LONG_PATH})])


def test_plain_text_has_no_escapes_no_box_lines_and_one_row_per_line() -> None:
    text = console.to_text(render_jobs.check_report(_refusal()))
    assert not ESCAPE.search(text) and not set(text) & set("─│┃━┏┗╭╰")
    lines = text.splitlines()
    assert lines[0] == "Pre-flight for web2 (live move):"
    # failing rows first; the objects and the remedy under the message, each on one line
    assert lines[1].split()[:2] == ["[ERROR]", "storage.chain-outside"]
    assert lines[1].endswith(f"{LONG_PATH} is outside every datastore")
    assert lines[2].split() == ["objects:", "disk", "vda,", "file", LONG_PATH]
    assert lines[3].split()[0] == "remedy:" and lines[3].endswith("rebase vda onto it")
    assert lines[4].split()[:2] == ["[PASS]", "pass.example"]
    assert lines[5] == "refused: 1 error(s), 0 warning(s), 2 requirement(s) checked"


def test_on_a_narrow_terminal_long_cells_wrap_and_lose_nothing() -> None:
    text = console.to_text(render_jobs.check_report(_refusal()), width=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "…" not in text
    # Folded inside its column, the path is still all there, in order.
    assert LONG_PATH in "".join(text.split())
    assert "rebasevdaontoit" in "".join(text.split())


def test_data_is_never_read_as_markup() -> None:
    finding = FindingOut(code="x.y", status="error", message="[bold]web1[/bold] is [red]odd",
                         remedy="see [link]")
    assert console.to_text(render_jobs.finding_line(finding)) == (
        "  [ERROR] x.y  [bold]web1[/bold] is [red]odd — see [link]")


def test_a_terminal_gets_colour_a_pipe_gets_none() -> None:
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        console.show(render_jobs.check_report(_refusal()), stream)
    assert "\x1b[" in tty.getvalue()  # the verdict and the error rows in colour
    # The same words (the terminal's are wrapped at its width).
    assert "".join(ESCAPE.sub("", tty.getvalue()).split()) == "".join(pipe.getvalue().split())
    assert "\x1b" not in pipe.getvalue()


def test_waiting_on_a_terminal_draws_a_bar_in_place_and_clears_it() -> None:
    tty = Terminal()
    status = console.LiveStatus(tty)
    job = JobOut.model_validate(PRECOPY, from_attributes=True)
    status.update(job.phase, lambda bar: render_jobs.progress_view(job, bar))
    status.update(job.phase, lambda bar: render_jobs.progress_view(job, bar))
    status.clear()
    drawn = ESCAPE.sub("", tty.getvalue())
    assert "━" in drawn and "59%" in drawn and "612 MiB/1.0 GiB" in drawn
    # Redrawn over itself, and erased at the end: the report that follows starts clean.
    assert tty.getvalue().endswith("\x1b[2K") and "\x1b[?25h" in tty.getvalue()


def test_waiting_in_a_pipe_prints_a_line_per_phase_without_a_bar() -> None:
    pipe = io.StringIO()
    status = console.LiveStatus(pipe)
    job = JobOut.model_validate(PRECOPY, from_attributes=True)
    for _ in range(3):
        status.update(job.phase, lambda bar: render_jobs.progress_view(job, bar))
    assert pipe.getvalue() == (
        "precopy  59%  612 MiB/1.0 GiB  remaining 412 MiB  iter 3  dirty 45 MiB/s  "
        "bw 110 MiB/s  5.40 s\n")


def test_json_is_exactly_the_json_even_on_a_terminal(
        client: FerryClient, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Terminal()
    monkeypatch.setattr("sys.stdout", tty)
    monkeypatch.setattr("sys.stderr", Terminal())
    assert cli.main(["job", "show", "job-7", "--json"], client=client, extensions=[]) == 0
    shown = tty.getvalue()
    assert "\x1b" not in shown
    assert json.loads(shown) == json.loads(
        JobOut.model_validate(PRECOPY, from_attributes=True).model_dump_json())


def test_a_refusal_on_a_terminal_is_red_and_says_the_same_words(
        client: FerryClient, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, plain = run(client, capsys, "migrate", "web2", "--host", "kvm-beta")
    tty = Terminal()
    monkeypatch.setattr("sys.stderr", tty)
    assert cli.main(["migrate", "web2", "--host", "kvm-beta"], client=client,
                    extensions=[]) == 4
    coloured = tty.getvalue()
    assert "\x1b[1;31mferry: error: cannot migrate web2 to kvm-beta" in coloured
    assert ESCAPE.sub("", coloured).split() == plain.split()
    assert all(f.message in plain for f in FINDINGS)


def test_a_narrow_terminal_keeps_a_job_id_whole_for_copying() -> None:
    job_id = "3f2a9c1e-7b5d-4e0f-9a8b-7c6d5e4f3a2b"
    done = JobOut.model_validate(DONE, from_attributes=True).model_copy(update={"id": job_id})
    text = console.to_text(render.jobs_table([done]), width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert any(line.startswith(f"{job_id}  migrate  web1") for line in text.splitlines())
    # The HOSTS cell is folded inside its column, not cut short.
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ID "))
    start, end = lines[header].index("HOSTS"), lines[header].index("STATE")
    cell = "".join(line[start:end] for line in lines[header + 1:])
    assert cell.replace(" ", "") == "kvm-alpha->kvm-beta"
