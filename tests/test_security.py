"""Security: TLS verified by default, a private CA by configuration, no plain http beyond
loopback unless asked, the metrics listener on loopback unless told otherwise."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from orderwatch import ConfigError, TransientApiError, load_settings
from orderwatch._client import OrdersApi, RetryPolicy
from orderwatch._sandbox import Sandbox, World
from orderwatch._settings import ApiSettings

from .conftest import Daemon, sandbox_api, wait_until, write_config

ONCE = RetryPolicy(attempts=1, wait_initial=0, wait_max=0, wait_jitter=0)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_sandbox(ca: trustme.CA) -> Iterator[Sandbox]:
    sandbox = Sandbox(World(seed=2, orders=25, open_orders=3), host="127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    sandbox._server.socket = context.wrap_socket(sandbox._server.socket, server_side=True)
    with sandbox:
        yield sandbox


def api_settings(sandbox: Sandbox, **extra: object) -> ApiSettings:
    port = sandbox.url.rsplit(":", 1)[1]
    return ApiSettings.model_validate(
        {
            "base_url": f"https://localhost:{port}",
            "client_id": "sandbox",
            "client_secret": "sandbox-secret",
            **extra,
        }
    )


@pytest.mark.anyio
async def test_certificates_are_verified_by_default(https_sandbox: Sandbox) -> None:
    async with OrdersApi(api_settings(https_sandbox), retry=ONCE) as api:
        with pytest.raises(TransientApiError, match="connection failed"):
            await api.list_orders(1)


@pytest.mark.anyio
async def test_a_private_ca_is_trusted_through_ca_bundle(
    https_sandbox: Sandbox, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with OrdersApi(api_settings(https_sandbox, ca_bundle=str(bundle)), retry=ONCE) as api:
        page = await api.list_orders(1)
    assert len(page.orders) == 20


def problems(tmp_path: Path, **api: object) -> list[str]:
    path = write_config(tmp_path / "c.toml", api={"token": "t", **api})
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return list(caught.value.problems)


def test_plain_http_beyond_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    assert problems(tmp_path, base_url="http://api.example") == [
        (
            "api: base_url is plain http:// to api.example: credentials would travel unencrypted; "
            "use https:// or set api.allow_insecure_http = true"
        )
    ]
    allowed = write_config(
        tmp_path / "ok.toml",
        api={"token": "t", "base_url": "http://api.example", "allow_insecure_http": True},
    )
    assert load_settings(allowed).api.allow_insecure_http
    for loopback in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        assert load_settings(
            write_config(tmp_path / "l.toml", api={"token": "t", "base_url": loopback})
        )


def test_a_ca_bundle_must_exist_and_hold_certificates(tmp_path: Path) -> None:
    [missing] = problems(
        tmp_path, base_url="https://api.example", ca_bundle=str(tmp_path / "none.pem")
    )
    assert (
        missing == f"api.ca_bundle: cannot read {tmp_path / 'none.pem'}: No such file or directory"
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    [bad] = problems(tmp_path, base_url="https://api.example", ca_bundle=str(junk))
    assert bad == f"api.ca_bundle: {junk} holds no PEM certificates"


def test_the_metrics_listener_defaults_to_loopback_and_says_so_otherwise(
    tmp_path: Path, sandbox: Sandbox, daemon_factory: Callable[[Path], Daemon]
) -> None:
    cfg = write_config(tmp_path / "c.toml", api={"base_url": sandbox.url, "token": "t"})
    assert load_settings(cfg).metrics.listen == "127.0.0.1:9464"
    wide = write_config(
        tmp_path / "wide.toml",
        api=sandbox_api(sandbox),
        state={"path": str(tmp_path / "s.db")},
        metrics={"listen": "0.0.0.0:0"},
    )
    daemon = daemon_factory(wide).start()
    wait_until(
        lambda: "metrics: listening on 0.0.0.0, reachable beyond this machine" in daemon.log(),
        what="the warning",
    )
    assert daemon.terminate() == 0


def test_a_sigterm_while_the_daemon_starts_still_exits_cleanly(
    tmp_path: Path, sandbox: Sandbox, daemon_factory: Callable[[Path], Daemon]
) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        api=sandbox_api(sandbox),
        state={"path": str(tmp_path / "s.db")},
        metrics={"listen": "127.0.0.1:0"},
    )
    daemon = daemon_factory(cfg).start()
    wait_until(lambda: "metrics on http://" in daemon.log(), what="the start under way")
    assert daemon.terminate() == 0
