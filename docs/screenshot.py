"""Take the README's screenshots of the real page in headless Chromium (offline assistant): desktop
and phone, light and dark, English and Spanish.

.venv/bin/python docs/screenshot.py   # writes docs/screenshot.png and docs/screenshots/*.png
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

HERE = Path(__file__).resolve().parent
OUT = HERE / "screenshots"
os.environ["CHATBOT_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="chatbot-shot-")
for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL", "REDIS_URL"):
    os.environ.pop(name, None)

from chatbot import create_app  # noqa: E402

SCREENS = {"desktop": {"width": 1100, "height": 760}, "phone": {"width": 360, "height": 740}}
QUESTIONS = {
    "en": ("My phone gets really hot when charging", "And if it keeps getting hot?"),
    "es": ("Mi teléfono se calienta mucho al cargar", "¿Y si sigue calentándose?"),
}
DRAFT = {
    "en": "my screen is cracked, is it covered by warranty?",
    "es": "¿la garantía cubre una pantalla rota?",
}


def shoot(browser, url: str, screen: str, theme: str, lang: str) -> Path:
    context = browser.new_context(
        viewport=SCREENS[screen],
        device_scale_factor=1,
        color_scheme=theme,
        locale=lang,
        extra_http_headers={"Accept-Language": lang},
        has_touch=screen == "phone",
    )
    page = context.new_page()
    page.goto(url + "/")
    for done, question in enumerate(QUESTIONS[lang], start=1):
        page.fill("textarea[name=content]", question)
        page.press("textarea[name=content]", "Enter")
        page.locator("article[data-status=complete]").nth(2 * done - 1).wait_for()
    page.fill("textarea[name=content]", DRAFT[lang])
    path = OUT / f"{screen}-{theme}-{lang}.png"
    page.screenshot(path=str(path))
    context.close()
    return path


def main() -> None:
    app = create_app({"PROVIDER": "offline", "OFFLINE_WORD_DELAY": 0})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        for screen in SCREENS:
            for theme in ("light", "dark"):
                for lang in ("en", "es"):
                    print("wrote", shoot(browser, url, screen, theme, lang))
        (HERE / "screenshot.png").write_bytes((OUT / "desktop-light-en.png").read_bytes())
        browser.close()
    server.shutdown()
    print("wrote", HERE / "screenshot.png")


if __name__ == "__main__":
    main()
