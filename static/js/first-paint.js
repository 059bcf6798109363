// Loaded in the page's head, not deferred (so it runs before anything is painted): from the first
// frame the message list shows its newest message and times read in the reader's own time zone,
// rather than the page jumping when the deferred scripts arrive. Each frame until the page is
// parsed (DOMContentLoaded; chat.js takes over then), or until the reader scrolls.
(function () {
  "use strict";
  // (an element the parser has left: something follows it or one of its ancestors; the text of
  // a time still being parsed would be added to after ours)
  const parsed = (element) => {
    for (let node = element; node; node = node.parentNode) if (node.nextSibling) return true;
    return document.readyState !== "loading";
  };

  // Times are sent in UTC; show them in the reader's own time zone (chat.js uses this too, for
  // what htmx swaps in later).
  const localTimes = (root) => {
    // (a message's clock time; the list's relative times stay as the server wrote them)
    // (in the page's language, as the reader's browser writes it: en-GB 24 h, en-US 12 h)
    const page = document.documentElement.lang;
    const lang = (navigator.languages || []).find((l) => l.split("-")[0] === page) || page || [];
    root.querySelectorAll(".message-meta time[datetime]:not([data-local])").forEach((t) => {
      if (!parsed(t)) return;
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      const shown = t.textContent;
      t.textContent = d.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
      // the message's name ("You, 10:42") says the time it shows
      const article = t.closest("article[aria-label]");
      if (article) article.setAttribute("aria-label", article.getAttribute("aria-label").replace(shown, t.textContent));
      t.title = d.toLocaleString(lang);
      t.dataset.local = "1";
    });
  };
  window.chatbotLocalTimes = localTimes;

  // The server shows times and days where the reader is once it knows where that is.
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && !document.cookie.split("; ").includes("chatbot_tz=" + encodeURIComponent(zone))) {
      document.cookie = "chatbot_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* (no Intl: times stay in UTC, as labelled) */ }

  let done = false;
  const stop = () => { done = true; };
  ["wheel", "touchstart", "mousedown", "keydown"].forEach((type) =>
    addEventListener(type, stop, { capture: true, passive: true, once: true }));
  const frame = () => {
    if (done) return;
    const messages = document.getElementById("messages");
    if (messages) {
      localTimes(document);
      messages.scrollTop = messages.scrollHeight;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);  // (before each paint, with the page's styles applied)
  document.addEventListener("DOMContentLoaded", () => { frame(); stop(); });
})();
