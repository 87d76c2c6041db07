"""The ack page in a real browser: headless Chromium opens an ack link, clicks the button."""

from __future__ import annotations

import math
import time
from typing import Any

from orderwatch._acklink import AckToken, make_token
from orderwatch._silences import Ack
from orderwatch._web import AckPage, EpisodeView, WebServer

SECRET = "browser-test-secret"


class MemoryDesk:
    def __init__(self, view: EpisodeView) -> None:
        self.view = view

    def episode(self, order_id: str) -> EpisodeView | None:
        return self.view if order_id == "o-3048" else None

    def acknowledge(self, token: AckToken, by: str | None, comment: str | None) -> Ack | None:
        ack = Ack(
            token.order_id,
            self.view.number,
            token.status,
            token.since,
            time.time(),
            math.inf,
            by,
            comment,
        )
        self.view = EpisodeView(self.view.number, self.view.status, self.view.since, ack)
        return ack


def test_the_ack_page_acknowledges_with_a_click_and_refuses_a_tampered_link(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    since = time.time() - 7200
    desk = MemoryDesk(EpisodeView(3048, "Payed", since))
    server = WebServer("127.0.0.1", 0, AckPage(desk, SECRET))
    try:
        token = make_token(SECRET, "o-3048", status="Payed", since=since, now=time.time())
        link = f"http://127.0.0.1:{server.port}/ack/{token}"
        browser.get(link)
        assert "Order #3048 is stuck in Payed" in browser.find_element(By.TAG_NAME, "h1").text
        assert desk.view.ack is None  # opening the link changed nothing
        browser.find_element(By.NAME, "by").send_keys("Anna")
        browser.find_element(By.NAME, "comment").send_keys("calling the supplier")
        browser.find_element(By.TAG_NAME, "button").click()
        assert "Acknowledged by Anna" in browser.find_element(By.TAG_NAME, "body").text
        assert desk.view.ack is not None and desk.view.ack.comment == "calling the supplier"

        browser.get(link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB"))
        assert browser.find_element(By.TAG_NAME, "h1").text == "This link is not valid"
    finally:
        server.close()
