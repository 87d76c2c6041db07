"""Settings: the TOML file and ``ORDERWATCH_<SECTION>__<KEY>`` variables, validated once, here.

:func:`load_settings` returns typed, valid :class:`Settings` or raises
:class:`~orderwatch.ConfigError` listing every problem, one line each, naming its key
(``api.base_url: required``). Nothing here touches the network.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import socket
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orderwatch._apprise import apprise_problem
from orderwatch._budget import floor_budget
from orderwatch._detect import EventKind
from orderwatch._exceptions import ConfigError
from orderwatch._messages import template_problem
from orderwatch._models import KNOWN_STATUSES, canonical_status
from orderwatch._routing import QuietHours, parse_duration
from orderwatch._store._url import url_problem
from orderwatch._summary import SummarySchedule, summary_template_problem

__all__ = [
    "ApiSettings",
    "NotifySettings",
    "RouteSettings",
    "Settings",
    "SummarySettings",
    "WebhookSettings",
    "config_path",
    "default_state_path",
    "load_settings",
]

CONFIG_ENV: Final = "ORDERWATCH_CONFIG"
CREDENTIAL_PREFIX: Final = "credential:"


def _credential(value: object) -> object:
    """``"credential:NAME"`` → the contents of ``$CREDENTIALS_DIRECTORY/NAME`` (systemd's
    ``LoadCredential=``), so that no secret sits in the file or the environment."""
    if not isinstance(value, str) or not value.startswith(CREDENTIAL_PREFIX):
        return value
    name = value.removeprefix(CREDENTIAL_PREFIX).strip()
    if not name or "/" in name or name in {".", ".."}:
        raise PydanticCustomError("credential", "a credential name must be a plain file name")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise PydanticCustomError(
            "credential",
            "names credential '{name}' but $CREDENTIALS_DIRECTORY is not set "
            "(systemd's LoadCredential= sets it)",
            {"name": name},
        )
    try:
        text = (Path(directory) / name).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise PydanticCustomError(
            "credential",
            "cannot read credential '{name}' from $CREDENTIALS_DIRECTORY: {reason}",
            {"name": name, "reason": reason},
        ) from None
    if not text:
        raise PydanticCustomError("credential", "credential '{name}' is empty", {"name": name})
    return text


Secret = Annotated[SecretStr, BeforeValidator(_credential)]


def default_state_path() -> Path:
    """``$STATE_DIRECTORY/orderwatch.db`` under systemd, else ``orderwatch.db`` here."""
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state_dir) / "orderwatch.db" if state_dir else Path("orderwatch.db")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in {"http", "https"} or not url.host:
        raise PydanticCustomError("url", "must be an http:// or https:// URL")
    return value.rstrip("/")


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise PydanticCustomError("duration", str(error)) from None


_PER_HOUR: Final = {"s": 3600.0, "m": 60.0, "min": 60.0, "h": 1.0, "hour": 1.0, "d": 1 / 24}


def _per_hour(value: object) -> float:
    """``"1200/h"`` (or ``/s``, ``/min``, ``/d``; a bare number is per hour) → requests an hour."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        count, _, unit = value.strip().partition("/")
        factor = _PER_HOUR.get(unit.strip().lower() or "h")
        try:
            number = float(count)
        except ValueError:
            number = None
        if factor is not None and number is not None:
            return number * factor
    raise PydanticCustomError("rate", 'must be requests per time, like "1200/h" or "20/min"')


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Duration = Annotated[float, BeforeValidator(_duration)]
PerHour = Annotated[float, BeforeValidator(_per_hour)]


def _loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ca_bundle(path: Path) -> Path:
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:  # an OSError too: caught first
        raise PydanticCustomError(
            "file", "{path} holds no PEM certificates", {"path": str(path)}
        ) from None
    except OSError as error:
        raise PydanticCustomError(
            "file", "cannot read {path}: {reason}", {"path": str(path), "reason": error.strerror}
        ) from None
    return path


class ApiSettings(_Section):
    base_url: HttpUrl
    client_id: str | None = None
    client_secret: Secret | None = None
    token: Secret | None = None
    timeout: float = Field(default=10.0, gt=0)
    max_rps: float = Field(default=5.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)
    ca_bundle: Annotated[Path, AfterValidator(_ca_bundle)] | None = None
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _no_plain_http_beyond_loopback(self) -> ApiSettings:
        url = httpx.URL(self.base_url)
        if url.scheme == "http" and not _loopback(url.host) and not self.allow_insecure_http:
            raise PydanticCustomError(
                "insecure",
                "base_url is plain http:// to {host}: credentials would travel unencrypted; "
                "use https:// or set api.allow_insecure_http = true",
                {"host": url.host},
            )
        return self

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> ApiSettings:
        if self.token is not None:
            if self.client_id or self.client_secret:
                raise PydanticCustomError(
                    "auth", "set either token or client_id and client_secret, not both"
                )
        elif not self.client_id or self.client_secret is None:
            raise PydanticCustomError(
                "auth", "set client_id and client_secret (or token, a fixed bearer token)"
            )
        return self


class PollSettings(_Section):
    interval: Duration = Field(default=30.0, gt=0)
    min_interval: Duration | None = Field(default=None, gt=0)
    full_sync_interval: Duration = Field(default=24 * 3600.0, gt=0)
    budget: PerHour | None = Field(default=None, gt=0)  # requests an hour; None: no budget

    @model_validator(mode="after")
    def _min_below_interval(self) -> PollSettings:
        if self.min_interval is not None and self.min_interval > self.interval:
            raise PydanticCustomError("interval", "min_interval must not exceed interval")
        return self

    @field_validator("budget")
    @classmethod
    def _budget_keeps_the_head(cls, budget: float | None, info: ValidationInfo) -> float | None:
        """The head page alone needs one request per ``interval``; what the open orders need
        is checked against the state file (``orderwatch check-config``)."""
        interval = info.data.get("interval")
        if budget is not None and interval is not None and budget < floor_budget(1, interval):
            raise PydanticCustomError(
                "budget",
                "{budget}/h cannot fetch even the head page once per poll.interval "
                "({interval}s): it needs at least {least}/h",
                {
                    "budget": f"{budget:g}",
                    "interval": f"{interval:g}",
                    "least": f"{math.ceil(floor_budget(1, interval)):g}",
                },
            )
        return budget

    def floor_budget(self, units: int) -> float:
        """Requests an hour that fetch ``units`` pages or ``/status`` once per ``interval``."""
        return floor_budget(units, self.interval)


def _state_url(url: SecretStr) -> SecretStr:
    problem = url_problem(url.get_secret_value())
    if problem:
        raise PydanticCustomError("state_url", problem)
    return url


class StateSettings(_Section):
    """A SQLite file (``path``, the default) or a PostgreSQL database (``url``), not both."""

    path: Path = Field(default_factory=default_state_path)
    # A secret: the URL may carry the database password (or name it: "credential:NAME").
    url: Annotated[Secret, AfterValidator(_state_url)] | None = None

    @model_validator(mode="after")
    def _one_store(self) -> StateSettings:
        if self.url is not None and "path" in self.model_fields_set:
            raise PydanticCustomError(
                "state",
                "state.path and state.url are both set: choose one (path: a SQLite "
                "file; url: a PostgreSQL database)",
            )
        return self

    @property
    def location(self) -> Path | str:
        """What :func:`~orderwatch._store.open_store` opens: the URL, else the path."""
        return self.path if self.url is None else self.url.get_secret_value()


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class HaSettings(_Section):
    """Instances sharing one PostgreSQL database: this one's name, and the leader's lease."""

    instance: str = Field(default_factory=_default_instance, min_length=1)
    lease: Duration = 15.0

    @field_validator("lease")
    @classmethod
    def _long_enough(cls, lease: float) -> float:
        if lease < 2.0:
            raise PydanticCustomError(
                "lease", "must be at least 2s (the leader renews it every third of it)"
            )
        return lease


class MetricsSettings(_Section):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return _listen(value)

    @property
    def address(self) -> tuple[str, int] | None:
        return _address(self.listen)


def _known_status(value: str) -> str:
    status = canonical_status(value)
    if status not in KNOWN_STATUSES:
        raise PydanticCustomError(
            "status",
            "unknown status '{unknown}' (known: {known})",
            {"unknown": value, "known": ", ".join(KNOWN_STATUSES)},
        )
    return status


def _apprise_url(value: str) -> str:
    problem = apprise_problem(value)
    if problem:
        raise PydanticCustomError("apprise_url", problem)
    return value


Status = Annotated[str, AfterValidator(_known_status)]
AppriseUrl = Annotated[str, BeforeValidator(_credential), AfterValidator(_apprise_url)]


class _Filters(_Section):
    statuses: list[Status] | None = None
    from_statuses: list[Status] | None = None
    events: list[EventKind] | None = None

    @field_validator("events")
    @classmethod
    def _not_summary(cls, kinds: list[EventKind] | None) -> list[EventKind] | None:
        if kinds is not None and "summary" in kinds:
            raise PydanticCustomError(
                "events",
                "a summary goes to the route [[notify.summaries]] names, whatever its filters: "
                "leave it out of events",
            )
        return kinds


class RouteSettings(_Filters):
    name: str = Field(min_length=1)
    urls: list[AppriseUrl] = Field(min_length=1)
    format: Literal["text", "markdown", "html"] = "text"
    title: str | None = None
    body: str | None = None
    digest_title: str | None = None
    digest_body: str | None = None
    summary_title: str | None = None
    summary_body: str | None = None
    group_wait: Duration = Field(default=10.0, ge=0)
    digest_threshold: int = Field(default=5, ge=1)
    quiet_hours: str | None = None
    timezone: str = "UTC"
    urgent: list[Status] = Field(default_factory=list)

    @field_validator(
        "title", "body", "digest_title", "digest_body", "summary_title", "summary_body"
    )
    @classmethod
    def _template(cls, source: str | None, info: ValidationInfo) -> str | None:
        if source is None:
            return None
        name = info.field_name or ""
        fmt = info.data.get("format", "text")
        if name.startswith("summary_"):
            problem = summary_template_problem(source, fmt=fmt)
        else:
            problem = template_problem(source, digest=name.startswith("digest_"), fmt=fmt)
        if problem:
            raise PydanticCustomError("template", problem)
        return source

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, window: str | None) -> str | None:
        if window is not None:
            try:
                QuietHours.parse(window, "UTC")
            except ValueError as error:
                raise PydanticCustomError("quiet_hours", str(error)) from None
        return window

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        return _zone_name(name)

    def quiet(self) -> QuietHours | None:
        return (
            None if self.quiet_hours is None else QuietHours.parse(self.quiet_hours, self.timezone)
        )


def _webhook_secret(secret: SecretStr) -> SecretStr:
    value = secret.get_secret_value()
    try:
        ok = value.startswith("whsec_") and bool(base64.b64decode(value[6:], validate=True))
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise PydanticCustomError(
            "webhook_secret", "must be a Standard Webhooks secret: whsec_ followed by base64"
        )
    return secret


class WebhookSettings(_Filters):
    name: str = Field(min_length=1)
    url: HttpUrl
    secret: Annotated[Secret, AfterValidator(_webhook_secret)]


def _zone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone", "unknown time zone '{name}' (e.g. Europe/Moscow)", {"name": name}
        ) from None
    return name


class SummarySettings(_Section):
    route: str = Field(min_length=1)
    every: Literal["day", "week"] = "day"
    at: str = "09:00"
    timezone: Annotated[str, AfterValidator(_zone_name)] = "UTC"

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, at: str) -> str:
        try:
            SummarySchedule.parse("day", at, "UTC")
        except ValueError as error:
            raise PydanticCustomError("at", str(error).removeprefix("at ")) from None
        return at

    def schedule(self) -> SummarySchedule:
        return SummarySchedule.parse(self.every, self.at, self.timezone)


class NotifySettings(_Section):
    initial: bool = False
    max_age: Duration = Field(default=24 * 3600.0, gt=0)
    watcher_after: Duration = Field(default=300.0, gt=0)
    routes: list[RouteSettings] = Field(default_factory=list)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    summaries: list[SummarySettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _summaries_name_routes(self) -> NotifySettings:
        routes = {route.name for route in self.routes}
        unknown = sorted({s.route for s in self.summaries if s.route not in routes})
        if unknown:
            raise PydanticCustomError(
                "summary_route",
                "summaries name no route called {names} (a summary goes to a route, not a webhook)",
                {"names": ", ".join(unknown)},
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        names = [r.name for r in self.routes] + [w.name for w in self.webhooks]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise PydanticCustomError(
                "unique",
                "route and webhook names must be unique: {names}",
                {"names": ", ".join(duplicated)},
            )
        return self


class StuckSettings(_Section):
    status: Status
    after: Duration = Field(gt=0)
    repeat: Duration | None = Field(default=None, gt=0)


class AlertsSettings(_Section):
    stuck: list[StuckSettings] = Field(default_factory=list)

    @field_validator("stuck")
    @classmethod
    def _one_rule_per_status(cls, rules: list[StuckSettings]) -> list[StuckSettings]:
        statuses = [rule.status for rule in rules]
        duplicated = sorted({s for s in statuses if statuses.count(s) > 1})
        if duplicated:
            raise PydanticCustomError(
                "unique", "one rule per status: {names}", {"names": ", ".join(duplicated)}
            )
        return rules


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if value and (not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536):
        raise PydanticCustomError("listen", 'must be "host:port" (or "" to turn it off)')
    return value


def _address(listen: str) -> tuple[str, int] | None:
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class WebSettings(_Section):
    """The ack page: ``listen`` (where), ``public_url`` (how people reach it), ``secret``."""

    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9465"
    public_url: HttpUrl
    secret: Secret

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr) -> SecretStr:
        if len(secret.get_secret_value()) < 16:
            raise PydanticCustomError(
                "secret", "must be at least 16 characters (it signs the ack links)"
            )
        return secret

    @property
    def address(self) -> tuple[str, int] | None:
        return _address(self.listen)


class LogSettings(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="ORDERWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    api: ApiSettings
    poll: PollSettings = Field(default_factory=PollSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    ha: HaSettings = Field(default_factory=HaSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    web: WebSettings | None = None
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del settings_cls, dotenv_settings, file_secret_settings  # only the file and the environment
        # Earlier sources win: the environment overrides the file (passed as init values).
        return env_settings, init_settings


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not str(part).startswith(("function-", "model-")):
            text += f".{part}" if text else str(part)
    return text or "config"


def _message(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound:g}" if isinstance(bound, float) else f"must be {op} {bound}"
    if kind in {"too_short", "string_too_short"} and ctx.get("min_length") == 1:
        return "must not be empty"
    return str(error["msg"]).removeprefix("Value error, ")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"config: file not found: {path}"]) from None
    except IsADirectoryError:
        raise ConfigError([f"config: {path} is a directory, not a file"]) from None
    except PermissionError:
        raise ConfigError([f"config: permission denied reading {path}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"config: {path}: invalid TOML: {error}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config: {path}: not UTF-8 text"]) from None


def config_path(cli_value: str | None) -> Path | None:
    """The config file named by ``--config`` or, failing that, ``$ORDERWATCH_CONFIG``."""
    value = cli_value or os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def load_settings(path: Path | None) -> Settings:
    """Read ``path`` (if given) and the environment into valid :class:`Settings`.

    Raises :class:`ConfigError` with every problem found, each naming its key.
    """
    data = _read_toml(path) if path is not None else {}
    data.setdefault("api", {})  # so that a missing [api] names its required keys
    try:
        settings = Settings(**data)
    except ValidationError as error:
        problems = [f"{_location(e['loc'])}: {_message(e)}" for e in error.errors()]
        raise ConfigError(problems) from None
    return settings
