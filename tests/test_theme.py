"""Light and dark: the colours pass WCAG contrast in both themes, the device's theme is followed
until the visitor picks one, and the pick is remembered (a cookie the server paints from)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import HX

CSS = (Path(__file__).resolve().parent.parent / "static" / "css" / "chat.css").read_text()


def variables(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block))


def theme(name: str) -> dict[str, str]:
    light = variables(re.search(r":root \{(.*?)\n\}", CSS, re.S).group(1))
    if name == "light":
        return light
    chosen = variables(re.search(r':root\[data-theme="dark"\] \{(.*?)\n\}', CSS, re.S).group(1))
    device = variables(
        re.search(
            r'@media \(prefers-color-scheme: dark\) \{\s*:root:not\(\[data-theme="light"\]\) \{(.*?)\}',
            CSS,
            re.S,
        ).group(1)
    )
    assert chosen == device, "the dark theme is written twice (chosen, and the device's): keep them the same"
    assert set(chosen) == set(light), set(light) ^ set(chosen)
    return {**light, **chosen}


def luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


TEXT = [  # (text, background) pairs the page uses
    *[("ink", bg) for bg in ("bg", "panel", "user", "assistant", "hover", "mark", "code-bg", "error-bg")],
    *[("muted", bg) for bg in ("bg", "panel", "user", "hover")],
    *[("accent", bg) for bg in ("bg", "panel", "user", "hover")],
    ("accent-ink", "accent"),
    ("error", "panel"),
    ("error", "error-bg"),
    ("note", "panel"),
    ("badge-ink", "badge-bg"),
]
OUTLINES = [("control", "panel"), ("control", "bg"), ("accent", "panel"), ("accent", "bg")]


@pytest.mark.parametrize("name", ["light", "dark"])
def test_text_and_outlines_have_enough_contrast(name):
    colours = theme(name)
    low = [
        (fg, bg, round(contrast(colours[fg], colours[bg]), 2))
        for fg, bg in TEXT
        if contrast(colours[fg], colours[bg]) < 4.5
    ]
    assert not low, f"text below 4.5:1 in {name}: {low}"
    low = [
        (fg, bg, round(contrast(colours[fg], colours[bg]), 2))
        for fg, bg in OUTLINES
        if contrast(colours[fg], colours[bg]) < 3
    ]
    assert not low, f"outlines below 3:1 in {name}: {low}"


def test_the_device_decides_until_the_visitor_picks(client):
    page = client.get("/").get_data(as_text=True)
    assert re.search(r'<html lang="en">', page) and '<meta name="color-scheme" content="light dark">' in page
    assert 'data-action="theme"' in page and 'aria-pressed="false"' in page

    picked = client.post("/theme", data={"theme": "dark", "next": "/"})
    assert picked.status_code == 303 and picked.headers["Location"] == "/"
    assert "chatbot_theme=dark" in picked.headers["Set-Cookie"]
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="en" data-theme="dark">' in page
    assert '<meta name="color-scheme" content="dark">' in page
    assert re.search(r'name="theme" value="light"[^>]*aria-pressed="true"', page)

    # the page's script switches in place: no page to go back to
    assert (
        client.post("/theme", data={"theme": "light"}, headers={"X-Requested-With": "fetch"}).status_code
        == 204
    )
    assert '<html lang="en" data-theme="light">' in client.get("/").get_data(as_text=True)


def test_an_unknown_theme_is_a_readable_400(client):
    refused = client.post("/theme", data={"theme": "sepia"}, headers=HX)
    assert refused.status_code == 400 and refused.get_data(as_text=True).strip() == "Choose light or dark."
    assert "Set-Cookie" not in refused.headers


# --- in the browser ---------------------------------------------------------------------------------


@pytest.fixture
def dark_device(browser, live_server):
    context = browser.new_context(viewport={"width": 1100, "height": 800}, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('.chat')).backgroundColor")


def test_a_dark_device_gets_the_dark_page_and_the_toggle_is_remembered(dark_device, live_server):
    page = dark_device
    page.goto(live_server.url + "/")
    toggle = page.locator('header [data-action="theme"]')
    assert background(page) == "rgb(24, 28, 34)"  # --panel, dark
    assert toggle.get_attribute("aria-pressed") == "true"  # (the device is dark: chat.js says so)

    with page.expect_response(lambda r: r.url.endswith("/theme") and r.status == 204):
        toggle.click()  # light, at once, without leaving the page
    page.wait_for_function(
        "getComputedStyle(document.querySelector('.chat')).backgroundColor === 'rgb(255, 255, 255)'"
    )
    assert toggle.get_attribute("aria-pressed") == "false"
    page.reload()
    assert page.locator("html").get_attribute("data-theme") == "light"
    assert background(page) == "rgb(255, 255, 255)"  # the server painted it light from the start

    with page.expect_response(lambda r: r.url.endswith("/theme") and r.status == 204):
        page.locator('header [data-action="theme"]').click()
    page.wait_for_function(
        "getComputedStyle(document.querySelector('.chat')).backgroundColor === 'rgb(24, 28, 34)'"
    )
    page.reload()
    assert page.locator("html").get_attribute("data-theme") == "dark"
