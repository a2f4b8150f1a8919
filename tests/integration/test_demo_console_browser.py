"""``canhbao demo --serve`` as a person uses it (issue 10, "Done means"): it prints the
console's address and its accounts; in Chromium the operator logs in, sees the
scenario's warnings arrive live, verifies one and sees the new state come back on the
stream it is watching; two approvers send a citizen broadcast. Every part's /metrics
shows the end-to-end latency and consumer lag with real values; Ctrl-C stops every
part. One demo run for all of it (module fixture), on the embedded broker only: the
demo starts its own Tansu, as ``make demo`` does."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from canhbao.metrics import scrape
from tests.integration.helpers import REPO
from tests.servers import require

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "artifacts"
ACCOUNT = re.compile(r"^account: (\S+) (\S+) \((\w+)\)$", re.M)
CONSOLE = re.compile(r"^console: (http://127\.0\.0\.1:\d+/)$", re.M)
METRICS = re.compile(r"metrics\s+(\w+)\s+http://127\.0\.0\.1:(\d+)/metrics")
PID = re.compile(r"\(pid (\d+)")


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (password, role)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, within: float) -> str:
        """The output once ``pattern`` shows in it; fails if the demo exits first."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            out = self.output()
            if re.search(pattern, out, re.M):
                return out
            assert self.proc.poll() is None, f"the demo exited ({self.proc.returncode}):\n{out}"
            time.sleep(0.3)
        raise AssertionError(f"no {pattern!r} within {within:g} s:\n{self.output()[-3000:]}")

    def ready(self) -> Demo:
        """Once the demo printed the console's address and its accounts."""
        if not self.url:
            out = self.wait_for(r"^account: pho-ban-b ", 150)
            found = CONSOLE.search(out)
            assert found is not None
            self.url = found[1].rstrip("/")
            self.accounts = {name: (pw, role) for name, pw, role in ACCOUNT.findall(out)}
        return self


@pytest.fixture(scope="module")
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    if "tansu" not in str(request.config.getoption("broker")):
        pytest.skip("the demo on its embedded broker: run with --broker tansu")
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "demo-serve.log"  # CI keeps it beside the screenshots
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHBAO_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "canhbao", "demo", "--serve", "--duration", "30"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # Not waited for here: the browser test starts Chromium meanwhile, so that it
        # is logged in before the scenario's warnings come.
        yield Demo(proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def log_in(page: object, url: str, name: str, password: str) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(url + "/login")
    page.get_by_label("Tài khoản").fill(name)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.locator("#live")).to_have_text("Đang nhận trực tiếp", timeout=15_000)


@pytest.mark.server("chromium")
def test_the_operator_sees_the_scenarios_warnings_arrive_live_and_acts_on_one(
    demo: Demo,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=require("chromium"), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            demo.ready()
            operator = next(n for n, (_, role) in demo.accounts.items() if role == "operator")
            approvers = [n for n, (_, role) in demo.accounts.items() if role == "approver"]
            log_in(page, demo.url, operator, demo.accounts[operator][0])
            rows = page.locator("#rows tr")
            before = rows.count()
            # The scenario plays after the console is up: its warnings come to this
            # page by server-sent events, without a reload.
            flood = page.locator("#rows tr", has_text="Đáp Cầu").filter(has_text="Lũ sông")
            expect(flood).to_be_visible(timeout=120_000)
            assert rows.count() > before, "no warning arrived while the page was open"
            page.screenshot(path=ARTIFACTS / "demo-console-live.png", full_page=True)

            # Act in a second tab, watch the first: the worker's new state comes back live.
            other = browser.new_page(viewport={"width": 1366, "height": 768})
            log_in(other, demo.url, operator, demo.accounts[operator][0])
            other.locator("#rows tr", has_text="Đáp Cầu").filter(has_text="Lũ sông").get_by_role(
                "link", name="Lũ sông"
            ).click()
            other.get_by_role("button", name="Xác minh", exact=True).click()
            expect(other.locator("p.ok")).to_contain_text("Đã gửi lệnh")
            expect(flood).to_contain_text("đã xác minh", timeout=60_000)
            page.screenshot(path=ARTIFACTS / "demo-console-verified.png", full_page=True)

            # The level-III flood asks to warn citizens: the operator may not approve,
            # the two approvers do, and the broadcast is sent. Once the scenario is over,
            # so that no newer state of the flood supersedes the one approved.
            demo.wait_for(r"^Summary — ", 180)
            other.goto(demo.url + "/broadcasts")
            expect(other.locator("section.broadcast").first).to_be_visible(timeout=30_000)
            assert other.get_by_role("button", name="Phê duyệt").count() == 0
            bid = other.locator("section.broadcast code").first.inner_text()
            for name in approvers:
                approver = browser.new_page(viewport={"width": 1366, "height": 768})
                log_in(approver, demo.url, name, demo.accounts[name][0])
                approver.goto(demo.url + "/broadcasts")
                section = approver.locator("section.broadcast", has_text=bid)
                section.get_by_role("button", name="Phê duyệt").click()
                expect(approver.locator("p.ok")).to_contain_text("Đã gửi lệnh")
                approver.screenshot(path=ARTIFACTS / f"demo-console-approved-{name}.png",
                                    full_page=True)  # fmt: skip
                approver.close()
            sent = other.locator("section.broadcast.done", has_text=bid)
            for _ in range(60):  # the approvals stage decides; the page shows its state
                other.goto(demo.url + "/broadcasts")
                if sent.count() and "đã phát" in sent.first.inner_text():
                    break
                time.sleep(1)
            expect(sent.first).to_contain_text("đã phát")
            expect(sent.first).to_contain_text(approvers[0])
            other.screenshot(path=ARTIFACTS / "demo-console-broadcast-sent.png", full_page=True)
        finally:
            browser.close()


def test_the_demo_prints_the_console_and_an_operator_and_two_approvers(demo: Demo) -> None:
    demo.ready()
    assert sorted(role for _, role in demo.accounts.values()) == [
        "approver", "approver", "operator",
    ]  # fmt: skip
    passwords = [pw for pw, _ in demo.accounts.values()]
    assert len(set(passwords)) == 3 and all(len(pw) >= 12 for pw in passwords)


def metric(text: str, name: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]


def test_every_part_serves_its_metrics_with_real_values(demo: Demo) -> None:
    out = demo.wait_for(r"^Summary — ", 180)  # the scenario is over, all delivered
    ports = dict(METRICS.findall(out))
    assert set(ports) == {"worker", "recorder", "dispatcher", "console"}
    texts: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # lag is measured every few seconds
        texts = {part: scrape(int(port)) or "" for part, port in ports.items()}
        if all(metric(t, "canhbao_consumer_lag_records") for t in texts.values()):
            break
        time.sleep(1)
    for part, text in texts.items():
        assert metric(text, "canhbao_consumer_lag_updated_timestamp_seconds")[0] > 0, part
        assert metric(text, "canhbao_consumer_lag_records"), f"{part}: no consumer lag"
    assert 'group="canhbao.validate"' in texts["worker"]
    assert 'group="canhbao.dispatch.webhook"' in texts["dispatcher"]
    assert re.search(r'consumer_lag_records\{group="canhbao-demo-\w+\.record"', texts["recorder"])
    # Reading observed → first delivery, for every webhook the demo delivered.
    counts = metric(texts["dispatcher"], "canhbao_end_to_end_latency_seconds_count")
    delivered = metric(texts["dispatcher"], "canhbao_deliveries_total")
    assert sum(counts) > 0 and sum(counts) <= sum(delivered)
    assert sum(metric(texts["dispatcher"], "canhbao_end_to_end_latency_seconds_sum")) > 0
    assert sum(metric(texts["worker"], "canhbao_readings_evaluated_total")) > 0
    assert sum(metric(texts["recorder"], "canhbao_record_rows_total")) > 0


def test_ctrl_c_stops_every_part_of_the_demo(demo: Demo) -> None:
    demo.wait_for(r"Ctrl-C stops it all", 180)
    children = [int(p) for p in PID.findall(demo.output())]
    assert len(children) >= 3  # the worker, the console, the recorder (and restarts)
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(60) == 0, demo.output()[-3000:]
    for pid in children:
        # Reaped by the demo: no such process left (not even a zombie).
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    out = demo.output()
    ports = [int(port) for _, port in METRICS.findall(out)]
    broker = re.search(r"Embedded Tansu broker on 127\.0\.0\.1:(\d+)", out)
    assert broker is not None
    for port in [*ports, int(broker[1])]:  # nothing of the demo answers any more
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"127.0.0.1:{port} still answers"
