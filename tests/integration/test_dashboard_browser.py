"""The web dashboard in a real browser (Debian's chromium, driven by selenium and chromedriver):
it logs in with a token, shows the cluster, scales a deployment and sees the new pod without a
reload, shows a pod's logs, answers an unknown page with a 404 page and an API error with a
readable message. Without a token it answers with a login page and no data; a view token's page
is read-only and the API refuses its writes."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftorch.api.v1 import objects_pb2
from raftorch.local.agents import LocalAgents
from raftorch.local.masters import LocalMasters
from tests.integration._inprocess import eventually, label_privileged

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parents[2]
# The README's screenshot: RAFTORCH_SCREENSHOT=docs/dashboard.png refreshes it.
SCREENSHOT_ENV = "RAFTORCH_SCREENSHOT"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1400")


def hello_world(replicas: int) -> objects_pb2.Deployment:
    labels = {"app": "hello-world"}
    return objects_pb2.Deployment(
        metadata=objects_pb2.ObjectMeta(name="hello-world", namespace="default"),
        spec=objects_pb2.DeploymentSpec(
            replicas=replicas, selector=objects_pb2.LabelSelector(match_labels=labels),
            template=objects_pb2.PodTemplateSpec(
                metadata=objects_pb2.ObjectMeta(labels=labels),
                spec=objects_pb2.PodSpec(termination_grace_period_seconds=1, containers=[objects_pb2.Container(
                    name="hello", image="hello", command=["sh", "-c", "echo hello from the dashboard test; "
                                                                      "i=0; while true; do i=$((i+1)); "
                                                                      "echo tick $i; sleep 1; done"])]))))


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
        pytest.skip("chromium or chromedriver missing")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalMasters]:
    masters = LocalMasters(tmp_path / "masters")
    masters.start()
    agents = LocalAgents(tmp_path / "agents", masters.endpoints, ["dash-a"], runtime="process",
                         ca_dir=masters.pki_dir)
    try:
        masters.wait_ready()
        agents.start()
        with masters.client() as c:
            eventually(lambda: label_privileged(c), what="namespace default may run host processes")
        yield masters
    finally:
        agents.stop()
        masters.kill()
        for a in agents.agents.values():
            for f in a.data_dir.rglob("*.json"):
                with contextlib.suppress(ValueError, OSError):
                    pid = json.loads(f.read_text()).get("pid")
                    if pid:
                        os.killpg(pid, signal.SIGKILL)


# The page re-renders on every change: read and click through script, never holding an element.
def text(driver: Any, element_id: str) -> str:
    return str(driver.execute_script("const e = document.getElementById(arguments[0]); "
                                     "return e ? e.innerText : '';", element_id))


def click(driver: Any, selector: str) -> bool:
    return bool(driver.execute_script("const e = document.querySelector(arguments[0]); "
                                      "if (e) { e.click(); } return !!e;", selector))


def hello_pods(driver: Any) -> list[str]:
    names = driver.execute_script("return [...document.querySelectorAll('#pods tr td:nth-child(2)')]"
                                  ".map(td => td.innerText);")
    return [n for n in names if n.startswith("hello-world-")]


def test_the_dashboard_shows_scales_and_streams_the_cluster(cluster: LocalMasters, browser: Any,
                                                            tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    masters = cluster
    master = next(iter(masters.masters.values()))
    url = f"http://{master.http_addr}"
    with masters.client() as c:
        c.objects.create(hello_world(1))
        token = c.auth.create_token(name="dashboard-test", role="edit").token
    # Without a token: the login page, and no data.
    browser.get(url + "/")
    assert browser.find_element(By.ID, "login") is not None
    assert "Masters" not in browser.page_source
    # The address `raftctl dashboard` prints: the token rides in the fragment and logs in.
    browser.get(url + "/#token=" + token)
    eventually(lambda: text(browser, "mode") == "read-write", timeout=30, what="logged in, with an edit role")
    assert "token=" not in browser.current_url
    eventually(lambda: "dash-a" in text(browser, "nodes"), timeout=60, what="the node listed")
    eventually(lambda: len(hello_pods(browser)) == 1, timeout=60, what="the hello-world pod listed")
    assert "leader" in text(browser, "masters")
    eventually(lambda: text(browser, "live") == "live", what="the live stream")
    # Scale from the page; the new pod appears through the change stream, with no reload.
    browser.execute_script("window.notReloaded = true")
    assert click(browser, '[data-scale="hello-world:+1"]')
    eventually(lambda: len(hello_pods(browser)) == 2, timeout=60, what="a second pod without a reload")
    assert browser.execute_script("return window.notReloaded") is True
    with masters.client() as c:
        deploy = c.objects.get("deployments", "hello-world", "default")
        assert deploy.spec.replicas == 2  # type: ignore[attr-defined]
    # A rolling restart from the page: two new pods (a new template) replace the two.
    before = set(hello_pods(browser))
    assert click(browser, '[data-restart="hello-world"]')
    eventually(lambda: len(set(hello_pods(browser)) - before) == 2 and len(hello_pods(browser)) == 2, timeout=90,
               what="two new pods after the restart")
    with masters.client() as c:
        deploy = c.objects.get("deployments", "hello-world", "default")
        assert "raftorch.io/restartedAt" in deploy.spec.template.metadata.annotations  # type: ignore[attr-defined]
    # A pod's logs.
    first = hello_pods(browser)[0]
    eventually(lambda: "Running" in text(browser, "pods"), timeout=60, what="a running pod")

    def logs_shown() -> bool:
        shown = text(browser, "logs")
        if "hello from the dashboard test" in shown:
            return True
        if "loading" not in shown:  # not asked yet, or asked before the pod wrote: ask (again)
            click(browser, f'[data-logs="{first}"]')
        return False

    eventually(logs_shown, timeout=60, what="the pod's logs on the page")

    # Live: later lines arrive in the open pane, with no click or reload.
    def last_tick() -> int:
        ticks = [int(w) for w in text(browser, "logs").split() if w.isdigit()]
        return max(ticks, default=0)

    seen = last_tick()
    eventually(lambda: last_tick() >= seen + 2, timeout=30, what="new log lines streamed into the page")
    eventually(lambda: "Started" in text(browser, "events"), what="events on the page")
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "dashboard.png")
    if not screenshot.is_absolute():
        screenshot = REPO / screenshot
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # An API error is shown readably and the page stays.
    browser.execute_script("showLogs('default', 'no-such-pod')")
    eventually(lambda: "no-such-pod" in text(browser, "error"), what="a readable error")
    assert "hello-world" in text(browser, "deployments")

    # An unknown page is a 404 page.
    browser.get(url + "/no/such/page")
    assert "404" in browser.find_element(By.TAG_NAME, "h1").text
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/no/such/page", timeout=10)
    assert info.value.code == 404
    info.value.close()


def _post(url: str, body: bytes, headers: dict[str, str]) -> urllib.error.HTTPError:
    request = urllib.request.Request(url, method="POST", data=body, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    return info.value


def test_no_data_without_a_token_and_a_view_token_only_reads(masters: LocalMasters) -> None:
    master = next(iter(masters.masters.values()))
    base = f"http://{master.http_addr}"
    # A stranger gets the login page and 401s, never data.
    with urllib.request.urlopen(base + "/", timeout=10) as resp:
        page = resp.read().decode()
    assert 'id="login"' in page and "Masters" not in page
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/api/overview", timeout=10)
    assert info.value.code == 401
    info.value.close()
    refused = _post(base + "/login", b"token=rt_nosuch.secret", {"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.code == 401 and "That token was refused" in refused.read().decode()
    refused.close()
    # A view token reads, sees a read-only page, and its scale is refused by the API's RBAC.
    with masters.client() as c:
        viewer = c.auth.create_token(name="viewer", role="view").token
        c.objects.create(hello_world(0))
    auth = {"Authorization": f"Bearer {viewer}"}
    with urllib.request.urlopen(urllib.request.Request(base + "/api/overview", headers=auth), timeout=10) as resp:
        overview = json.loads(resp.read())
    assert overview["writes"] is False and any(m["role"] == "leader" for m in overview["masters"])
    denied = _post(base + "/api/scale/default/hello-world", b'{"replicas": 3}',
                   {**auth, "Content-Type": "application/json"})
    assert denied.code == 403
    assert "the view role only reads" in json.loads(denied.read())["error"]
    denied.close()
    denied = _post(base + "/api/restart/default/hello-world", b"", auth)
    assert denied.code == 403 and "the view role only reads" in json.loads(denied.read())["error"]
    denied.close()
    # A write from another site is refused before it reaches the API.
    cross = _post(base + "/api/scale/default/hello-world", b'{"replicas": 3}',
                  {**auth, "Content-Type": "application/json", "Origin": "http://evil.example"})
    assert cross.code == 403
    cross.close()


def test_open_change_streams_do_not_keep_the_page_from_reading(masters: LocalMasters) -> None:
    """Each page holds five watches open (and a log stream); three pages' worth must not take
    the threads the dashboard reads the cluster with."""
    master = next(iter(masters.masters.values()))
    base = f"http://{master.http_addr}"
    with masters.client() as c:
        auth = {"Authorization": f"Bearer {c.auth.create_token(name='pages', role='view').token}"}
    streams = []
    try:
        for _ in range(3):
            stream = urllib.request.urlopen(urllib.request.Request(base + "/api/changes", headers=auth), timeout=30)
            streams.append(stream)
            assert stream.readline().startswith(b"event: ready")
        with urllib.request.urlopen(urllib.request.Request(base + "/api/overview", headers=auth),
                                    timeout=30) as resp:
            assert any(m["role"] == "leader" for m in json.loads(resp.read())["masters"])
    finally:
        for stream in streams:
            stream.close()


def test_raftctl_dashboard_forwards_a_local_port_and_prints_the_url(masters: LocalMasters, tmp_path: Path) -> None:
    import subprocess
    import sys

    master = next(iter(masters.masters.values()))
    admin = masters.admin
    config = tmp_path / "config.yaml"
    config.write_text(f"endpoints: [{master.client_addr}]\nca-file: {admin.ca_file}\n"
                      f"cert-file: {admin.cert_file}\nkey-file: {admin.key_file}\n")
    proc = subprocess.Popen([sys.executable, "-c", "from raftorch.cli.main import main; main()",
                             "--config", str(config),
                             "dashboard", "--address", master.http_addr, "--data-dir", str(tmp_path / "none")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"Dashboard of {master.http_addr} at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        base, _, fragment = url.partition("#token=")
        assert fragment, line  # a token made for the admin's page
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with opener.open(base, timeout=10) as resp:
            assert 'id="login"' in resp.read().decode()
        login = urllib.request.Request(base + "login", data=f"token={fragment}".encode(), method="POST",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        with opener.open(login, timeout=10) as resp:
            assert "<title>raftorch dashboard</title>" in resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_raftctl_dashboard_with_no_dashboard_there_says_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from raftorch.cli.main import cli
    from raftorch.local.masters import free_ports

    (port,) = free_ports(1)
    result = CliRunner().invoke(cli, ["dashboard", "--address", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: no dashboard answers at 127.0.0.1:{port}; is a master running with http-addr there?"]
