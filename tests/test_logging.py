"""Log lines: text or JSON on stderr, and every registered secret masked, whoever logs it."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from orderwatch._logging import REDACTED, SecretRedactor, configure_logging, redactor

# Registered in the process-wide redactor by these tests: unique, so no other test is affected.
TOKEN = "tok-logging-test-7f3a9c"
LONGER = TOKEN + "-and-more"


@pytest.fixture
def stderr_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let :func:`configure_logging` replace the root handlers, and put them back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("orderwatch", logging.INFO, __file__, 1, message, args, None)


def test_a_secret_is_masked_in_the_message_and_in_its_arguments() -> None:
    masker = SecretRedactor()
    masker.add("hunter22", None, "")
    line = record("login with %s failed (hunter22)", "hunter22")
    assert masker.filter(line) is True
    assert line.getMessage() == f"login with {REDACTED} failed ({REDACTED})"


def test_the_longest_secret_is_masked_first_so_no_piece_of_it_remains() -> None:
    masker = SecretRedactor()
    masker.add("abcd", "abcdefgh")
    assert masker.redact("x abcdefgh y abcd") == f"x {REDACTED} y {REDACTED}"


def test_strings_shorter_than_four_characters_are_never_treated_as_secrets() -> None:
    masker = SecretRedactor()
    masker.add("abc")
    assert masker.redact("abc abcd") == "abc abcd"


def test_a_secret_inside_an_exception_is_masked_in_the_traceback_text() -> None:
    masker = SecretRedactor()
    masker.add("hunter22")
    try:
        raise ValueError("bad password hunter22")  # noqa: TRY301 - the traceback is the input
    except ValueError:
        line = logging.LogRecord(
            "orderwatch", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    masker.filter(line)
    assert line.exc_info is None
    assert line.exc_text is not None
    assert f"ValueError: bad password {REDACTED}" in line.exc_text
    assert "hunter22" not in line.exc_text


def test_text_lines_carry_time_level_and_message_with_secrets_masked_for_every_logger(
    stderr_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "text")
    redactor.add(TOKEN, LONGER)
    logging.getLogger("orderwatch").info("got token %s", TOKEN)
    logging.getLogger("httpx").warning("sent Authorization: Bearer %s", LONGER)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO    got token \*\*\*", lines[0])
    assert lines[1].endswith("WARNING sent Authorization: Bearer ***")
    assert TOKEN not in "\n".join(lines)


def test_under_journald_text_lines_start_with_the_level_and_carry_no_time(
    stderr_logging: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    configure_logging("INFO", "text")
    logging.getLogger("orderwatch").warning("poll failed")
    assert capsys.readouterr().err == "WARNING poll failed\n"


def test_json_lines_are_one_object_each_with_the_exception_masked(
    stderr_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "json")
    redactor.add(TOKEN)
    log = logging.getLogger("orderwatch.notify")
    log.debug("Заказ №3048 → %s", TOKEN)
    try:
        raise RuntimeError(f"refused {TOKEN}")  # noqa: TRY301 - the traceback is the input
    except RuntimeError:
        log.exception("send failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first == {
        "ts": first["ts"],
        "level": "DEBUG",
        "logger": "orderwatch.notify",
        "message": "Заказ №3048 → ***",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["ts"])
    assert second["level"] == "ERROR"
    assert second["message"] == "send failed"
    assert "RuntimeError: refused ***" in second["exception"]
    assert TOKEN not in second["exception"]


def test_the_level_is_applied_and_chatty_libraries_only_warn(
    stderr_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("WARNING", "text")
    logging.getLogger("orderwatch").info("hidden")
    configure_logging("DEBUG", "text")
    logging.getLogger("httpx").info("HTTP Request: GET /v1/orders")
    logging.getLogger("apprise").info("Sent Slack notification.")
    assert capsys.readouterr().err == ""
    for name in ("httpx", "httpcore", "apprise", "stamina"):
        assert logging.getLogger(name).level == logging.WARNING
