"""What loading a page costs on the wire, measured in Chromium: every request of the load (the
page, its styles, scripts, images, the icon) with the bytes received for it, headers included
(Chrome DevTools Protocol, ``Network.loadingFinished.encodedDataLength``: compressed bytes, 0 for
what came from the browser's cache). Used by test_weight.py and bench/weight.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from .fake_openai import Reply
from .helpers import HX, parse_sse

# A phone on a middling mobile network (Chrome DevTools' "Fast 3G"): 150 ms latency, 1.6 Mbit/s
# down, 750 kbit/s up.
FAST_3G = {"offline": False, "latency": 150, "downloadThroughput": 1.6e6 / 8, "uploadThroughput": 750e3 / 8}
ANSWER = (
    "Here is what usually helps:\n\n"
    "1. Open **Settings > Battery** and see which apps use the most power.\n"
    "2. Lower the screen brightness and turn off background refresh for apps you rarely use.\n"
    "3. Switch on *low power mode* below 20%.\n\n"
    "If it still drains within a day, restart the phone and check for a system update before "
    "booking a repair at an authorised service centre."
)


@dataclass
class Resource:
    url: str
    wire_bytes: int = 0  # received over the network, headers included
    body_bytes: int = 0  # the decoded body
    encoding: str | None = None
    from_cache: bool = False
    status: int | None = None


@dataclass
class Load:
    url: str
    resources: dict[str, Resource] = field(default_factory=dict)
    dom_content_loaded_ms: float = 0.0

    @property
    def wire_bytes(self) -> int:
        return sum(r.wire_bytes for r in self.resources.values())

    def table(self) -> str:
        lines = [
            f"  {r.wire_bytes:>7,} B on the wire {r.body_bytes:>7,} B decoded  "
            f"{'cache' if r.from_cache else (r.encoding or 'identity'):<8} {r.status} {r.url}"
            for r in self.resources.values()
        ]
        total = f"  {self.wire_bytes:>7,} B in all; DOMContentLoaded at {self.dom_content_loaded_ms:.0f} ms"
        return "\n".join([*lines, total])


def load(page: Any, url: str, network: dict[str, Any] | None = None) -> Load:
    """Navigate ``page`` to ``url`` (a new navigation, as following a link) and wait until the
    network is quiet; returns what each request of the load cost. ``network``: conditions to
    emulate (``FAST_3G``)."""
    measured = Load(url)
    cdp = page.context.new_cdp_session(page)
    resources = measured.resources

    def sent(event: dict) -> None:
        resources[event["requestId"]] = Resource(event["request"]["url"])

    def received(event: dict) -> None:
        resource = resources.get(event["requestId"])
        if resource is None:
            return
        response = event["response"]
        resource.status = response["status"]
        resource.from_cache = resource.from_cache or bool(response.get("fromDiskCache"))
        headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
        resource.encoding = headers.get("content-encoding")

    def from_cache(event: dict) -> None:
        if event["requestId"] in resources:
            resources[event["requestId"]].from_cache = True

    def data(event: dict) -> None:
        if event["requestId"] in resources:
            resources[event["requestId"]].body_bytes += event["dataLength"]

    def finished(event: dict) -> None:
        if event["requestId"] in resources:
            resources[event["requestId"]].wire_bytes = int(event["encodedDataLength"])

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.responseReceived", received)
    cdp.on("Network.requestServedFromCache", from_cache)
    cdp.on("Network.dataReceived", data)
    cdp.on("Network.loadingFinished", finished)
    cdp.send("Network.enable")
    if network:
        cdp.send("Network.emulateNetworkConditions", network)
    try:
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        measured.dom_content_loaded_ms = page.evaluate(
            "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
        )
    finally:
        cdp.detach()
    return measured


def conversation(server_url: str, fake_openai: Any, exchanges: int) -> tuple[requests.Session, str]:
    """A browser (its session cookie) with one conversation of ``exchanges`` answered questions
    (``ANSWER``) on the server at ``server_url``; returns it and the conversation's path."""
    browser = requests.Session()
    browser.get(server_url + "/", timeout=10)
    fake_openai.will(*[Reply(ANSWER) for _ in range(exchanges)])
    address = "/c"
    for i in range(exchanges):
        response = browser.post(
            server_url + address,
            data={"content": f"Question {i}: my battery drains fast"},
            headers=HX,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        for event in parse_sse(response.text):
            if event["event"] == "chatbot:navigate":
                address = event["data"] + "/messages"
    return browser, address.removesuffix("/messages")
