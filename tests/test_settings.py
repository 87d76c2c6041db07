"""Configuration: the TOML contract, environment overrides, and one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from orderwatch import ConfigError, load_settings
from orderwatch._cli import main

VALID = """
[api]
base_url = "https://api.vektor-adv.com"
client_id = "my-client"
client_secret = "s3cret-value"

[poll]
interval = 15

[notify]
initial = true

[[notify.routes]]
name = "ops"
urls = ["json://127.0.0.1:9/hook", "mailto://user:pw@example.com"]
statuses = ["Cancelled", "Canceled"]
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ORDERWATCH_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orderwatch.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    return list(caught.value.problems)


def test_a_valid_file_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, VALID))
    assert settings.api.base_url == "https://api.vektor-adv.com"
    assert settings.api.timeout == 10.0
    assert settings.api.max_rps == 5.0
    assert settings.poll.interval == 15
    assert settings.state.path == Path("orderwatch.db")
    assert settings.metrics.listen == "127.0.0.1:9464"
    assert settings.notify.initial is True
    assert settings.notify.routes[0].statuses == ["Cancelled", "Cancelled"]


def test_the_example_configuration_is_valid() -> None:
    example = Path(__file__).parent.parent / "config" / "orderwatch.toml"
    settings = load_settings(example)
    assert settings.notify.routes


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERWATCH_API__CLIENT_SECRET", "from-env")
    monkeypatch.setenv("ORDERWATCH_POLL__INTERVAL", "7.5")
    settings = load_settings(write(tmp_path, VALID))
    assert settings.api.client_secret is not None
    assert settings.api.client_secret.get_secret_value() == "from-env"
    assert settings.poll.interval == 7.5


def test_state_defaults_under_systemd_to_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/orderwatch")
    settings = load_settings(write(tmp_path, VALID))
    assert settings.state.path == Path("/var/lib/orderwatch/orderwatch.db")


def test_missing_base_url_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path, '[api]\nclient_id = "a"\nclient_secret = "b"\n') == [
        "api.base_url: required"
    ]


def test_non_positive_interval_is_named(tmp_path: Path) -> None:
    assert "poll.interval: must be > 0" in problems(
        tmp_path, VALID.replace("interval = 15", "interval = 0")
    )


def test_an_unknown_apprise_scheme_is_named_with_its_index(tmp_path: Path) -> None:
    text = VALID.replace('"mailto://user:pw@example.com"', '"nosuchscheme://user:pw@host/x"')
    assert problems(tmp_path, text) == [
        'notify.routes[0].urls[1]: no apprise service understands "nosuchscheme://…"'
    ]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = """
[api]
timeout = -1
max_rps = 0
[poll]
interval = 0
[metrics]
listen = "nowhere"
[[notify.routes]]
name = ""
urls = []
statuses = ["Shipped"]
"""
    found = problems(tmp_path, text)
    for expected in (
        "api.base_url: required",
        "api.timeout: must be > 0",
        "api.max_rps: must be > 0",
        "poll.interval: must be > 0",
        "notify.routes[0].name: must not be empty",
        "notify.routes[0].urls: must not be empty",
    ):
        assert expected in found
    assert any(p.startswith("metrics.listen: ") for p in found)
    assert any(
        p.startswith("notify.routes[0].statuses[0]: unknown status 'Shipped'") for p in found
    )


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    assert "api.clientid: unknown key" in problems(tmp_path, VALID.replace("client_id", "clientid"))


def test_credentials_are_required_one_way_or_the_other(tmp_path: Path) -> None:
    text = '[api]\nbase_url = "https://x.example"\n'
    [problem] = problems(tmp_path, text)
    assert problem.startswith("api: set client_id and client_secret")
    both = text + 'token = "t0ken"\nclient_id = "a"\nclient_secret = "b"\n'
    assert problems(tmp_path, both) == [
        "api: set either token or client_id and client_secret, not both"
    ]


def test_a_fixed_token_is_enough(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[api]\nbase_url = "https://x.example"\ntoken = "tok"\n')
    )
    assert settings.api.token is not None


def test_duplicate_route_names_are_refused(tmp_path: Path) -> None:
    route = '[[notify.routes]]\nname = "ops"\nurls = ["json://127.0.0.1/"]\n'
    found = problems(tmp_path, VALID + route)
    assert found == ["notify: route and webhook names must be unique: ops"]


def test_invalid_toml_names_the_file_and_place(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "[api\nbase_url = 1")
    assert problem.startswith(f"config: {tmp_path / 'orderwatch.toml'}: invalid TOML")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.toml")
    assert caught.value.problems == (f"config: file not found: {tmp_path / 'nope.toml'}",)


def test_secrets_never_appear_in_problems(tmp_path: Path) -> None:
    text = VALID.replace("interval = 15", "interval = -3").replace(
        '"mailto://user:pw@example.com"', '"nosuchscheme://user:hunter2-secret@host/x"'
    )
    joined = "\n".join(problems(tmp_path, text))
    assert "hunter2-secret" not in joined
    assert "s3cret-value" not in joined


def test_check_config_exits_0_when_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(write(tmp_path, VALID))]) == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_check_config_exits_2_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[api]\nclient_id = "a"\nclient_secret = "b"\n[poll]\ninterval = 0\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["api.base_url: required", "poll.interval: must be > 0"]
    assert "Traceback" not in err


def test_config_path_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERWATCH_CONFIG", str(write(tmp_path, VALID)))
    assert main(["check-config"]) == 0


def test_run_refuses_a_bad_configuration_and_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"config: file not found: {tmp_path / 'missing.toml'}"
    bad = write(tmp_path, '[api]\nbase_url = "ftp://x"\ntoken = "t"\n')
    assert main(["run", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == "api.base_url: must be an http:// or https:// URL"


def test_no_config_at_all_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 2
    assert "pass --config PATH or set ORDERWATCH_CONFIG" in capsys.readouterr().err


toml_scalars = st.one_of(
    st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.booleans(), st.text(max_size=8)
)


@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    section=st.sampled_from(["api", "poll", "state", "metrics", "notify", "bogus"]),
    key=st.sampled_from(
        ["base_url", "timeout", "max_rps", "interval", "path", "listen", "initial", "x"]
    ),
    value=toml_scalars,
)
def test_random_invalid_configs_give_clean_errors_naming_a_key(
    tmp_path: Path, section: str, key: str, value: object
) -> None:
    import json

    literal = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    text = '[api]\nbase_url = "https://x.example"\ntoken = "t"\n'
    text = text if section == "api" else text + f"[{section}]\n"
    text += f"{key} = {literal}\n"
    path = tmp_path / "random.toml"
    path.write_text(text)
    try:
        load_settings(path)
    except ConfigError as error:
        for problem in error.problems:
            assert ": " in problem
            assert "\n" not in problem
            assert "Traceback" not in problem


def test_secrets_can_come_from_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "client_secret").write_text("from-credential\n")
    (creds / "hook").write_text("json://127.0.0.1:9/secret-path")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = VALID.replace('"s3cret-value"', '"credential:client_secret"').replace(
        '"json://127.0.0.1:9/hook"', '"credential:hook"'
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.api.client_secret is not None
    assert settings.api.client_secret.get_secret_value() == "from-credential"
    assert settings.notify.routes[0].urls[0] == "json://127.0.0.1:9/secret-path"


def test_a_missing_credential_is_named_by_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = VALID.replace('"s3cret-value"', '"credential:client_secret"')
    assert problems(tmp_path, text) == [
        (
            "api.client_secret: names credential 'client_secret' but $CREDENTIALS_DIRECTORY is not "
            "set (systemd's LoadCredential= sets it)"
        )
    ]
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert problems(tmp_path, text) == [
        (
            "api.client_secret: cannot read credential 'client_secret' from $CREDENTIALS_DIRECTORY: "
            "No such file or directory"
        )
    ]
    bad_name = VALID.replace('"s3cret-value"', '"credential:../etc/passwd"')
    assert problems(tmp_path, bad_name) == [
        "api.client_secret: a credential name must be a plain file name"
    ]


def test_the_log_section_is_validated(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, VALID + '[log]\nformat = "json"\n')).log.format == "json"
    [problem] = problems(tmp_path, VALID + '[log]\nformat = "xml"\n')
    assert problem.startswith("log.format: ")


NOTIFY = """
[api]
base_url = "https://api.example"
token = "tok"

[notify]
max_age = "12h"

[[notify.routes]]
name = "ops"
urls = ["json://127.0.0.1:9/hook"]
from_statuses = ["Payed"]
events = ["status_changed", "stuck"]
format = "markdown"
title = "#{{ number }}: {{ previous_status }} → {{ status }}"
group_wait = "30s"
digest_threshold = 10
quiet_hours = "22:00-08:00"
timezone = "Europe/Moscow"
urgent = ["Cancelled"]

[[notify.webhooks]]
name = "erp"
url = "https://erp.example/hooks/orders"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
statuses = ["Cancelled"]

[[alerts.stuck]]
status = "AwaitingCertificateAssignment"
after = "2h"
repeat = 21600
"""


def test_routes_webhooks_and_stuck_alerts_load(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, NOTIFY))
    route = settings.notify.routes[0]
    assert (route.group_wait, route.digest_threshold, route.format) == (30.0, 10, "markdown")
    assert route.quiet() is not None
    assert settings.notify.max_age == 12 * 3600
    assert settings.notify.webhooks[0].secret.get_secret_value().startswith("whsec_")
    rule = settings.alerts.stuck[0]
    assert (rule.status, rule.after, rule.repeat) == (
        "AwaitingCertificateAssignment",
        7200.0,
        21600.0,
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('title = "#{{ number }}', 'title = "#{{ numbr }}'),
            "notify.routes[0].title: template error: 'numbr' is undefined",
        ),
        (
            ('title = "#{{ number }}', 'title = "#{% if %}'),
            "notify.routes[0].title: template error on line 1: ",
        ),
        (
            ('group_wait = "30s"', 'group_wait = "soon"'),
            'notify.routes[0].group_wait: must be a duration such as 30, "90s", "2h" or "1d"',
        ),
        (
            ('quiet_hours = "22:00-08:00"', 'quiet_hours = "late"'),
            'notify.routes[0].quiet_hours: must look like "22:00-08:00"',
        ),
        (
            ('timezone = "Europe/Moscow"', 'timezone = "Mars/Olympus"'),
            "notify.routes[0].timezone: unknown time zone 'Mars/Olympus' (e.g. Europe/Moscow)",
        ),
        (
            ('events = ["status_changed", "stuck"]', 'events = ["deleted"]'),
            "notify.routes[0].events[0]: ",
        ),
        (
            ('secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"', 'secret = "hunter2"'),
            "notify.webhooks[0].secret: must be a Standard Webhooks secret: whsec_ followed by base64",
        ),
        (
            ('url = "https://erp.example/hooks/orders"', 'url = "erp.example"'),
            "notify.webhooks[0].url: must be an http:// or https:// URL",
        ),
        (('after = "2h"', "after = 0"), "alerts.stuck[0].after: must be > 0"),
        (('name = "erp"', 'name = "ops"'), "notify: route and webhook names must be unique: ops"),
        (
            ("digest_threshold = 10", "digest_threshold = 0"),
            "notify.routes[0].digest_threshold: must be >= 1",
        ),
        (
            ('statuses = ["Cancelled"]', 'events = ["summary"]'),
            "notify.webhooks[0].events: a summary goes to the route [[notify.summaries]] names",
        ),
    ],
)
def test_notification_settings_errors_name_their_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    [problem] = problems(tmp_path, NOTIFY.replace(*change))
    assert problem.startswith(expected)
    assert "hunter2" not in problem


def test_webhook_secrets_can_be_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "erp").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    text = NOTIFY.replace(
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"', 'secret = "credential:erp"'
    )
    assert (
        load_settings(write(tmp_path, text))
        .notify.webhooks[0]
        .secret.get_secret_value()
        .startswith("whsec_")
    )


def test_poll_intervals_take_durations_and_min_interval_stays_below_interval(
    tmp_path: Path,
) -> None:
    text = VALID.replace(
        "interval = 15", 'interval = "1m"\nmin_interval = "5s"\nfull_sync_interval = "12h"'
    )
    poll = load_settings(write(tmp_path, text)).poll
    assert (poll.interval, poll.min_interval, poll.full_sync_interval) == (60.0, 5.0, 43200.0)
    bad = VALID.replace("interval = 15", "interval = 10\nmin_interval = 20")
    assert problems(tmp_path, bad) == ["poll: min_interval must not exceed interval"]
    assert "api.concurrency: must be >= 1" in problems(
        tmp_path,
        VALID.replace('client_id = "my-client"', 'client_id = "my-client"\nconcurrency = 0'),
    )


@pytest.mark.parametrize(
    ("written", "per_hour"),
    [
        ('"1200/h"', 1200.0),
        ('"20/min"', 1200.0),
        ('"1/s"', 3600.0),
        ('"4800/d"', 200.0),
        ("900", 900.0),
    ],
)
def test_a_request_budget_is_read_per_hour(tmp_path: Path, written: str, per_hour: float) -> None:
    text = VALID.replace("interval = 15", f'interval = "5m"\nbudget = {written}')
    assert load_settings(write(tmp_path, text)).poll.budget == per_hour


def test_without_a_budget_there_is_none(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, VALID)).poll.budget is None


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ('"lots"', 'poll.budget: must be requests per time, like "1200/h" or "20/min"'),
        ('"12/fortnight"', 'poll.budget: must be requests per time, like "1200/h" or "20/min"'),
        ("0", "poll.budget: must be > 0"),
        (
            '"10/h"',
            (
                "poll.budget: 10/h cannot fetch even the head page once per poll.interval "
                "(300s): it needs at least 12/h"
            ),
        ),
    ],
)
def test_an_unusable_budget_is_named(tmp_path: Path, written: str, problem: str) -> None:
    text = VALID.replace("interval = 15", f'interval = "5m"\nbudget = {written}')
    assert problems(tmp_path, text) == [problem]


API = '[api]\nbase_url = "https://x.example"\ntoken = "t0k3n-value"\n'


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        (
            'path = "s.db"\nurl = "postgresql://ow:pw-9@db/ow"',
            (
                "state: state.path and state.url are both set: choose one (path: a SQLite file; "
                "url: a PostgreSQL database)"
            ),
        ),
        (
            'url = "mysql://ow:pw-9@db/ow"',
            (
                "state.url: unsupported scheme mysql:// (supported: postgresql://; a SQLite file "
                "is state.path)"
            ),
        ),
        (
            'url = "postgresql://ow:pw-9@db:port/ow"',
            "state.url: is not a valid URL (postgresql://user@host:5432/database)",
        ),
        (
            'url = "db.internal:5432"',
            (
                "state.url: is not a URL: it must start with postgresql:// (or use state.path for "
                "a file)"
            ),
        ),
        (
            'url = "postgresql://ow:pw-9@db:5432"',
            "state.url: names no database (postgresql://user@host:5432/database)",
        ),
    ],
    ids=["both", "scheme", "malformed", "not-a-url", "no-database"],
)
def test_the_state_url_is_validated_without_showing_its_password(
    tmp_path: Path, state: str, problem: str
) -> None:
    assert problems(tmp_path, f"{API}[state]\n{state}\n") == [problem]


def test_a_state_url_without_the_driver_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    assert problems(tmp_path, f'{API}[state]\nurl = "postgresql://ow:pw-9@db/ow"\n') == [
        "state.url: PostgreSQL needs the psycopg driver: pip install 'orderwatch[postgres]'"
    ]


def test_ha_settings_default_to_this_process_and_a_15s_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import socket

    monkeypatch.setenv("ORDERWATCH_STATE__URL", "postgresql://ow:pw-9@db.internal:5432/ow")
    settings = load_settings(write(tmp_path, API))
    assert settings.state.location == "postgresql://ow:pw-9@db.internal:5432/ow"
    assert "pw-9" not in repr(settings)
    assert settings.ha.instance == f"{socket.gethostname()}-{os.getpid()}"
    assert settings.ha.lease == 15.0
    named = load_settings(write(tmp_path, f'{API}[ha]\ninstance = "node-a"\nlease = "2s"\n'))
    assert (named.ha.instance, named.ha.lease) == ("node-a", 2.0)
    assert problems(tmp_path, f'{API}[ha]\ninstance = ""\nlease = "1500ms"\n') == [
        "ha.instance: must not be empty",
        "ha.lease: must be at least 2s (the leader renews it every third of it)",
    ]
