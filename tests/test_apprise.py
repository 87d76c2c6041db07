"""apprise behind one leaf module: URLs checked and masked without showing credentials, and a
message sent (to a real HTTP receiver on loopback) with a one-line reason when it fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from orderwatch import _apprise
from orderwatch._apprise import apprise_problem, mask_url, send

from .conftest import Receiver

pytestmark = pytest.mark.anyio


def test_the_apprise_module_is_a_leaf_of_the_package() -> None:
    tree = ast.parse(Path(_apprise.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in imported if name.startswith("orderwatch")]


def test_a_url_no_service_understands_is_named_without_its_credentials() -> None:
    problem = apprise_problem("nosuch://user:hunter2@example.test")
    assert problem == 'no apprise service understands "nosuch://…"'
    assert apprise_problem("json://127.0.0.1:8080/hook") is None


def test_a_masked_url_hides_the_password_and_the_query() -> None:
    masked = mask_url("mailto://ops:hunter2@mail.example.test?to=a@example.test")
    assert "hunter2" not in masked
    assert "?" not in masked
    assert masked.startswith("mailto://")


async def test_a_message_reaches_a_receiver_and_a_refusal_is_one_line(receiver: Receiver) -> None:
    assert await send(receiver.url, "Order #1", "new order", "text") is None
    assert receiver.titles() == ["Order #1"]
    reason = await send("json://127.0.0.1:9/nothing-listens", "t", "b", "text")
    assert reason is not None
    assert "\n" not in reason
