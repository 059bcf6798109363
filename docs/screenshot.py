"""Take the README's screenshot of the real page in headless Chromium (offline assistant).

.venv/bin/python docs/screenshot.py   # writes docs/screenshot.png
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

HERE = Path(__file__).resolve().parent
os.environ["CHATBOT_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="chatbot-shot-")
for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL"):
    os.environ.pop(name, None)

from chatbot import create_app  # noqa: E402

app = create_app({"PROVIDER": "offline", "OFFLINE_WORD_DELAY": 0})
server = make_server("127.0.0.1", 0, app, threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()

with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    )
    page = browser.new_page(viewport={"width": 1000, "height": 760}, device_scale_factor=1)
    page.goto(f"http://127.0.0.1:{server.server_port}/")
    for question in ("My phone gets really hot when charging", "¿Y si sigue calentándose?"):
        page.fill("textarea[name=content]", question)
        page.press("textarea[name=content]", "Enter")
        page.wait_for_function(
            "document.querySelectorAll('article[data-status=complete]').length >= "
            + str(2 if question.startswith("My") else 4)
        )
    page.fill("textarea[name=content]", "my screen is cracked, is it covered by warranty?")
    page.screenshot(path=str(HERE / "screenshot.png"))
    browser.close()
server.shutdown()
print("wrote", HERE / "screenshot.png")
