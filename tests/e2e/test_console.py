"""The console in a real headless Chromium against a real control plane and real agent processes.

One control plane and one browser for the module. Skipped only where there is no Chromium (or the
front-end files are not installed) and CI is not set; under CI=true those are failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skyline.cluster.client import ClusterClient
from skyline.cluster.console.assets import AXE_SCRIPT
from skyline.cluster.console.browser import headless_chromium, sign_in
from skyline.cluster.control import ControlConfig
from skyline.cluster.server import ServerConfig, ServerThread
from skyline.testing.cluster import AgentProcess, wait_until
from skyline.testing.console import require_browser

pytestmark = [pytest.mark.e2e]

require_browser()

from playwright.sync_api import expect  # noqa: E402  (after the skip: playwright is only needed here)


class Cluster:
    def __init__(self, server: ServerThread, tokens: dict[str, str], log_dir: Path) -> None:
        self.server, self.url, self.tokens, self.log_dir = server, server.url, tokens, log_dir

    def client(self, who: str) -> ClusterClient:
        return ClusterClient(self.url, self.tokens[who])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("console")
    config = ServerConfig(
        state_dir=root / "state", port=0, audit_log=root / "audit.jsonl",
        control=ControlConfig(tick_s=0.2, lost_after_s=2.0),
    )  # fmt: skip
    with ServerThread(config) as server:
        authority = server.built.authority
        tokens = {
            "admin": authority.issue("ada", "admin"),
            "operator": authority.issue("olivia", "operator"),
            "viewer": authority.issue("victor", "viewer"),
            "agent": authority.issue("agents", "agent"),
        }
        agent = AgentProcess(server.url, tokens["agent"], "worker", log_dir=root, cpus=2)
        try:
            admin = ClusterClient(server.url, tokens["admin"])
            wait_until(lambda: any(n["status"] == "alive" for n in admin.nodes()), timeout_s=60)
            admin.close()
            yield Cluster(server, tokens, root)
        finally:
            agent.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as chromium:
        yield chromium


class Page:
    """A signed-in page that records every console error and uncaught exception."""

    def __init__(self, browser: Any, cluster: Cluster, who: str, path: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        sign_in(self.page, cluster.url, cluster.tokens[who], next_path=path)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any, cluster: Cluster) -> Iterator[Any]:
    pages: list[Page] = []

    def make(who: str, path: str) -> Page:
        pages.append(Page(browser, cluster, who, path))
        return pages[-1]

    yield make
    errors = [e for p in pages for e in p.errors]
    for p in pages:
        p.close()
    assert errors == [], f"browser console errors: {errors}"


AXE_SOURCE = AXE_SCRIPT.read_text() if AXE_SCRIPT.is_file() else ""


def _axe(page: Any) -> list[dict[str, Any]]:
    # Evaluated through the DevTools protocol: the console's CSP (rightly) refuses injected <script>s.
    page.evaluate(AXE_SOURCE)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_every_view_renders_for_an_admin_without_errors_and_passes_axe(
    cluster: Cluster, open_page: Any
) -> None:
    admin = cluster.client("admin")
    done = admin.submit({"name": "hello", "command": "echo hello from the console test", "cpus": 0.5})
    admin.wait(done["id"], timeout_s=60)
    admin.close()
    tab = open_page("admin", "/ui/")
    page = tab.page
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator('[data-tier="datacenter"] canvas').first).to_be_visible()  # a uPlot chart
    for path, heading in [
        ("/ui/", "Overview"), ("/ui/jobs", "Jobs"), (f"/ui/jobs/{done['id']}", f"Job {done['id']}"),
        ("/ui/nodes", "Nodes"), ("/ui/nodes/worker", "Node worker"), ("/ui/scheduling", "Scheduling"),
        ("/ui/models", "Models"), ("/ui/audit", "Audit log"),
    ]:  # fmt: skip
        page.goto(cluster.url + path)
        expect(page.locator("h1")).to_contain_text(heading)
        assert _axe(page) == [], f"serious accessibility violations on {path}"
    page.goto(cluster.url + "/ui/audit")
    expect(page.locator(".chain")).to_contain_text("Hash chain verified")
    html = page.content()
    assert all(token not in html for token in cluster.tokens.values())


def test_a_submitted_job_goes_from_pending_to_succeeded_without_reload_and_its_logs_follow(
    cluster: Cluster, open_page: Any
) -> None:
    operator = cluster.client("operator")
    blocker = operator.submit({"name": "blocker", "command": "sleep 120", "cpus": 2})  # holds both CPUs
    wait_until(lambda: operator.job(blocker["id"])["status"] == "running", timeout_s=30)
    jobs = open_page("operator", "/ui/jobs").page
    jobs.evaluate("window.__not_reloaded = true")
    job = operator.submit({
        "name": "counts", "cpus": 1,
        "command": "for i in 1 2 3 4; do echo line $i; sleep 0.4; done",
    })  # fmt: skip
    status = jobs.locator(f'[data-job-row="{job["id"]}"] [data-field="status"]')
    expect(status).to_have_text("pending", timeout=15_000)  # the new row arrived by the live stream
    detail = open_page("operator", f"/ui/jobs/{job['id']}").page
    expect(detail.locator("#job-summary [data-field=status]").first).to_have_text("pending")
    operator.cancel(blocker["id"])  # room: the job is placed, runs and succeeds
    expect(status).to_have_text("succeeded", timeout=40_000)
    assert jobs.evaluate("window.__not_reloaded") is True
    expect(detail.locator("#logs")).to_contain_text("[0] line 4", timeout=15_000)
    expect(detail.locator("#log-state")).to_have_text("the job finished")
    expect(detail.locator("#job-summary [data-field=status]").first).to_have_text("succeeded")
    timeline = detail.locator(".timeline li [data-field=status]").all_inner_texts()
    assert timeline == ["pending", "placed", "running", "succeeded"]
    assert detail.evaluate("document.querySelectorAll('#logs .ln').length") == 4  # each line once
    operator.close()


def test_the_live_table_keeps_its_page_size_and_older_follows_the_last_row(
    cluster: Cluster, open_page: Any
) -> None:
    admin = cluster.client("admin")
    page = open_page("admin", "/ui/jobs?status=cancelled").page
    shown_before = page.locator("tbody [data-job-row]").count()
    made = [admin.submit({"name": f"burst-{i}", "command": "sleep 60", "cpus": 2}) for i in range(55)]
    for job in made:  # each joins the table of cancelled jobs, live
        admin.cancel(job["id"])
    total = page.locator("[data-total]")
    expect(total).to_have_text(str(shown_before + 55), timeout=15_000)
    rows = page.locator("tbody [data-job-row]")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.jobRow)") == [j["id"] for j in made[::-1][:50]]
    older = page.locator("[data-older]").get_attribute("href") or ""
    assert older.endswith(f"before={rows.nth(49).get_attribute('data-seq')}")
    page.click("[data-older]")
    expect(page.locator("tbody [data-job-row]").first).to_have_attribute("data-job-row", made[4]["id"])
    admin.close()


def test_an_operator_cancels_a_running_job_and_a_viewer_cannot(cluster: Cluster, open_page: Any) -> None:
    operator = cluster.client("operator")
    job = operator.submit({"name": "long", "command": "sleep 120", "cpus": 0.5})
    viewer = open_page("viewer", f"/ui/jobs/{job['id']}")
    viewer_page = viewer.page
    expect(viewer_page.locator("#job-summary [data-field=status]").first).to_have_text(
        "running", timeout=30_000
    )
    assert viewer_page.locator("#cancel-job").count() == 0
    refused = httpx.post(
        f"{cluster.url}/v1/jobs/{job['id']}/cancel",
        headers={"Authorization": f"Bearer {cluster.tokens['viewer']}"},
    )
    assert refused.status_code == 403
    # The console refuses it too, even with the viewer's own valid CSRF token.
    forged = viewer_page.evaluate(
        """async (id) => (await fetch(`/ui/jobs/${id}/cancel`, {method: 'POST',
             headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}})).status""",
        job["id"],
    )
    assert forged == 403
    assert viewer.errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    viewer.errors.clear()  # the one error this test provoked on purpose
    page = open_page("operator", f"/ui/jobs/{job['id']}").page
    page.click("#cancel-job")
    expect(page.locator("#job-summary [data-field=status]").first).to_have_text("cancelled", timeout=10_000)
    assert operator.job(job["id"])["status"] == "cancelled"
    expect(viewer_page.locator("#job-summary [data-field=status]").first).to_have_text(
        "cancelled", timeout=10_000
    )
    operator.close()


def test_a_lost_node_turns_red_after_its_agent_is_killed(cluster: Cluster, open_page: Any) -> None:
    doomed = AgentProcess(cluster.url, cluster.tokens["agent"], "doomed", log_dir=cluster.log_dir, cpus=1)
    try:
        page = open_page("viewer", "/ui/nodes").page
        row = page.locator('[data-node-row="doomed"]')
        status = row.locator("[data-field=node-status]")
        expect(status).to_have_text("alive", timeout=30_000)
        page.evaluate("window.__not_reloaded = true")
        doomed.kill()
        expect(status).to_have_text("lost", timeout=20_000)
        expect(row).to_have_class("node-row-lost")
        assert status.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(164, 14, 38)"
        assert page.evaluate("window.__not_reloaded") is True
    finally:
        doomed.kill()


@pytest.mark.slow
def test_cluster_up_serves_the_console(tmp_path: Path) -> None:
    from skyline.testing.cluster import ServerProcess

    server = ServerProcess(tmp_path / "state", extra=("--no-agent", "--gateway-port", "0"))
    try:
        assert f"web console on {server.url}/ui/" in server.out_path.read_text()
        login = httpx.get(f"{server.url}/ui/", follow_redirects=True)
        assert login.status_code == 200 and 'name="token"' in login.text
        assert "default-src 'self'" in login.headers["content-security-policy"]
    finally:
        server.stop()
