// The chat page's small behaviours that HTML alone can't do. No framework; htmx does the requests.
(function () {
  "use strict";
  // The page's words in its language (i18n.js_strings, a JSON block in the page), by English text.
  const strings = (() => {
    try {
      return JSON.parse(document.getElementById("i18n-strings").textContent);
    } catch (e) {
      return {};
    }
  })();
  const t = (text) => strings[text] || text;
  // Everything below is set up for the chat area on the page; when the sidebar swaps in another
  // conversation's chat area, it is all taken down (one AbortController) and set up again.
  let controller = null;
  let shown = null;

  function setUp(signal) {
    const on = (target, type, handler, options) =>
      target.addEventListener(type, handler, Object.assign({}, options, { signal }));
    const form = document.getElementById("composer");
    const messages = document.getElementById("messages");
    if (!form || !messages) return;
    const input = form.querySelector("textarea[name=content]");
    const errorBox = document.getElementById("composer-error");
    let clearOnAccept = true;
    let stickToBottom = true;

    const jump = document.getElementById("jump-latest");
    const atBottom = () => messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
    const streaming = () => messages.querySelector('[data-status="streaming"]') !== null;
    // "Jump to latest" shows while a reply is being written below where the reader has scrolled.
    const updateJump = () => { if (jump) jump.hidden = stickToBottom || !streaming(); };
    const scrollToEnd = () => { messages.scrollTop = messages.scrollHeight; };
    // Only the reader's own scrolling (wheel, touch, scrollbar, keys) stops the following: a view
    // that moves because a message was replaced or grew must not.
    let intentAt = 0;
    const intent = () => { intentAt = Date.now(); };
    const reading = () => Date.now() - intentAt < 1000;
    ["wheel", "touchmove", "pointerdown"].forEach((t) => on(messages, t, intent, { passive: true }));
    on(document, "keydown", (e) => {
      if (e.target !== input && ["PageUp", "PageDown", "ArrowUp", "ArrowDown", "Home", "End", " "].includes(e.key)) intent();
    });
    // New text arrived: follow it, unless the reader has just scrolled away (checked here too: the
    // scroll event that says so may not have run yet).
    const follow = () => {
      if (stickToBottom && reading() && !atBottom()) stickToBottom = false;
      if (stickToBottom) scrollToEnd();
      updateJump();
    };
    scrollToEnd();
    on(messages, "scroll", () => {
      if (reading()) stickToBottom = atBottom();
      else if (atBottom()) stickToBottom = true;
      updateJump();
    }, { passive: true });
    if (jump) on(jump, "click", () => {
      stickToBottom = true;
      scrollToEnd();
      updateJump();
      input.focus();
    });

    // "Show earlier messages" puts older messages above: the message the reader was looking at
    // stays where it was on the screen (rather than the view jumping to the oldest one loaded).
    let anchor = null;
    on(messages, "click", (e) => {
      const link = e.target.closest && e.target.closest(".earlier a");
      if (!link) return;
      let first = link.closest(".earlier").nextElementSibling;  // (the first message, not its day's line)
      while (first && !first.matches("article")) first = first.nextElementSibling;
      if (first) anchor = { link: link, el: first, top: first.getBoundingClientRect().top };
    });
    // The link had the focus and is gone: the list takes it (PageUp reads on upwards; a screen
    // reader goes on from the top of the list, the oldest messages just loaded).
    const keepPlace = () => {  // once the older messages are in (the link they replaced is gone)
      if (!anchor || anchor.link.isConnected) return;
      oneLineADay();  // (first: a day's line that goes would move the message again)
      if (anchor.el.isConnected) messages.scrollTop += anchor.el.getBoundingClientRect().top - anchor.top;
      anchor = null;
      if (!messages.contains(document.activeElement)) messages.focus({ preventScroll: true });
    };

    // Enter sends, Shift+Enter makes a new line (and nothing interferes with IME composition).
    if (input.dataset.placeholder) input.placeholder = input.dataset.placeholder;
    const keys = document.getElementById("composer-keys");
    if (keys) keys.hidden = false;
    // The box grows with its text (CSS field-sizing where the browser has it), and near the
    // limit a counter shows how much is left; past it, it says by how much (the server refuses
    // a longer message and says so: nothing is cut short).
    const grows = window.CSS && CSS.supports && CSS.supports("field-sizing", "content");
    const counter = document.getElementById("composer-count");
    const max = Number(input.dataset.max) || 0;
    const lang = document.documentElement.lang || undefined;
    const measure = () => {
      if (!grows) {
        input.style.height = "auto";
        input.style.height = input.scrollHeight + 2 + "px";
      }
      if (!counter || !max) return;
      const length = input.value.length;
      counter.textContent = length > max * 0.9 ? length.toLocaleString(lang) + " / " + max.toLocaleString(lang) : "";
      counter.classList.toggle("composer-count--over", length > max);
    };
    on(input, "input", measure);
    measure();
    on(input, "keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!busy()) form.requestSubmit();
      }
    });

    // Retry and Regenerate buttons submit this form too; they must not wipe what the user is typing.
    // The composer's request (a message, and its streamed reply) runs from before:request to
    // finally:request: meanwhile nothing else is sent from it (the buttons outside the form that
    // submit it, Retry, Regenerate and an editor's Send, are disabled too).
    let inFlight = false;
    const busy = () => inFlight || form.classList.contains("htmx-request");
    const outsideButtons = () => document.querySelectorAll('button[form="composer"]');
    const SPECIAL = ["retry", "regenerate", "edit"];  // sent by buttons that keep the composer's draft
    on(form, "htmx:before:request", (e) => {
      // (decided from what is actually sent: a button outside the form may reach htmx without
      // the submit event above)
      const body = e.detail && e.detail.ctx && e.detail.ctx.request && e.detail.ctx.request.body;
      if (body && typeof body.has === "function") clearOnAccept = !SPECIAL.some((name) => body.has(name) && body.get(name));
      inFlight = true;
      outsideButtons().forEach((b) => { b.disabled = true; });
    });
    on(form, "htmx:finally:request", () => {
      inFlight = false;
      outsideButtons().forEach((b) => { b.disabled = false; });
    });
    const afterField = document.getElementById("composer-after");
    const lastShown = () => {
      const articles = messages.querySelectorAll("article[data-message-id]");
      return articles.length ? articles[articles.length - 1].dataset.messageId : "";
    };
    // (on the document, capturing: it runs before htmx's own handler on the form, which may have
    // been added first and would otherwise send the form before this has filled in "after" or
    // refused a second request: the page then flashed "Please wait…" at its first message)
    on(document, "submit", (e) => {
      if (e.target !== form) return;
      const retry = e.submitter && ["retry", "regenerate", "edit"].includes(e.submitter.name) ? e.submitter : null;
      if (retry && retry.dataset.sent) {  // a double click must not ask twice
        e.preventDefault();
        e.stopImmediatePropagation();
        return;
      }
      // one request at a time: a Send, Retry, Regenerate or edit pressed while a reply is being
      // written would otherwise wait and go off when it ends
      if (busy()) {
        e.preventDefault();
        e.stopImmediatePropagation();
        if (errorBox) errorBox.textContent = t("Please wait for the reply to finish, or stop it, then send again.");
        return;
      }
      // the last message this page shows: if another tab changed the conversation meanwhile, the
      // server says so rather than continue it out of sight
      if (afterField) afterField.value = lastShown();
      if (retry) {
        retry.dataset.sent = "1";
        // (the button is disabled now and replaced by the reply it asked for: the focus would
        // drop to the page; the composer takes it, as after a Send)
        input.focus();
      }
      clearOnAccept = !retry;
      stickToBottom = true;
    }, { capture: true });

    // Edit: an editor opens inside the message (Enter resends, Shift+Enter a new line, Esc
    // cancels). Its fields belong to the composer's form (form="composer"), so the resend streams
    // like any message while the composer's own draft stays as it is; the earlier version is kept.
    const closeEditor = (article) => {
      const editor = article.querySelector(".message-editor");
      if (!editor) return;
      editor.remove();
      article.querySelector(".message-body").hidden = false;
      const button = article.querySelector('[data-action="edit"]');
      if (button) button.focus();
    };
    const openEditor = (article) => {
      if (article.querySelector(".message-editor")) return;
      messages.querySelectorAll(".message-editor").forEach((other) => {  // one editor at a time
        other.closest("article").querySelector(".message-body").hidden = false;
        other.remove();
      });
      const body = article.querySelector(".message-body");
      const source = article.querySelector(".message-source");
      const id = article.dataset.messageId;
      const editor = document.createElement("div");
      editor.className = "message-editor";
      const label = document.createElement("label");
      label.className = "visually-hidden";
      label.htmlFor = "edit-" + id;
      label.textContent = t("Edit your message");
      const area = document.createElement("textarea");
      area.id = "edit-" + id;
      area.name = "edit_content";
      area.setAttribute("form", "composer");
      area.rows = 3;
      area.value = source ? source.value : body.textContent;
      const actions = document.createElement("div");
      actions.className = "message-actions";
      const send = document.createElement("button");
      send.type = "submit";
      send.setAttribute("form", "composer");
      send.name = "edit";
      send.value = id;
      send.formNoValidate = true;
    send.disabled = busy();  // (re-enabled when the reply ends)
      send.className = "button button--small";
      send.dataset.action = "edit-send";
      send.textContent = t("Send");
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "button button--small button--quiet";
      cancel.dataset.action = "edit-cancel";
      cancel.textContent = t("Cancel");
      const hint = document.createElement("span");
      hint.className = "message-editor-hint";
      hint.textContent = t("The earlier version is kept (‹ › to switch back).");
      actions.append(send, cancel, hint);
      editor.append(label, area, actions);
      body.hidden = true;
      body.after(editor);
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    };
    on(messages, "click", (e) => {
      const target = e.target.closest && e.target.closest('[data-action="edit"], [data-action="edit-cancel"]');
      if (!target) return;
      e.preventDefault();
      const article = target.closest("article");
      if (target.dataset.action === "edit") openEditor(article);
      else closeEditor(article);
    });
    on(messages, "keydown", (e) => {
      const area = e.target.closest && e.target.closest(".message-editor textarea");
      if (!area) return;
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();  // (Esc here cancels the edit; it doesn't stop a reply)
        closeEditor(area.closest("article"));
      } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        const send = area.closest(".message-editor").querySelector('[data-action="edit-send"]');
        if (!busy()) form.requestSubmit(send);
        else if (errorBox) errorBox.textContent = t("Please wait for the reply to finish, or stop it, then send again.");
      }
    });

    // A new version (edit, regenerate) replaced a message: what followed the old one goes.
    on(form, "chatbot:forked", (e) => {
      const reply = document.getElementById("msg-" + (e.detail && e.detail.data));
      while (reply && reply.nextElementSibling && reply.nextElementSibling.matches("article")) {
        reply.nextElementSibling.remove();
      }
    });

    // ‹ n/m ›: another version of a message (and what followed it) replaces the list; the message
    // stays where it was on the screen, and the focus on the switcher.
    let versionAnchor = null;
    on(messages, "click", (e) => {
      const button = e.target.closest && e.target.closest('[data-action^="version-"]');
      if (!button || button.disabled) return;
      const from = button.form && button.form.querySelector('input[name="from"]');
      const first = messages.querySelector("article[data-message-id]");
      if (from && first) from.value = first.dataset.messageId;  // the list comes back as long as it is
      versionAnchor = {
        id: "msg-" + button.value,
        action: button.dataset.action,
        top: button.closest("article").getBoundingClientRect().top,
      };
    });
    const keepVersionPlace = () => {
      if (!versionAnchor) return;
      const article = document.getElementById(versionAnchor.id);
      if (!article) return;
      messages.scrollTop += article.getBoundingClientRect().top - versionAnchor.top;
      stickToBottom = atBottom();
      const again = article.querySelector(`[data-action="${versionAnchor.action}"]:not([disabled])`)
        || article.querySelector('[data-action^="version-"]:not([disabled])');
      if (again) again.focus();
      versionAnchor = null;
    };

    // Every htmx request carries the page's CSRF token (read at send time: the first message
    // replaces it with one bound to the browser's new owner).
    on(document, "htmx:config:request", (e) => {
      const meta = document.querySelector('meta[name="csrf-token"]');
      if (meta && e.detail && e.detail.ctx) e.detail.ctx.request.headers["X-CSRF-Token"] = meta.content;
    });

    // A message that never reached the server (offline, server down): say so; the draft stays.
    on(form, "htmx:error", (e) => {
      const ctx = e.detail && e.detail.ctx;
      if (!errorBox || (ctx && ctx.response)) return;  // (the server answered: its own line shows)
      errorBox.textContent = navigator.onLine
        ? t("We couldn't reach the server. Your message is still here: please send it again in a moment.")
        : t("You're offline. Your message is still here: send it again once you're back online.");
    });

    // Any other request that never reached the server (a rating, a version switch, Stop): say so
    // in the composer's line rather than nothing happening.
    on(document, "htmx:error", (e) => {
      const ctx = e.detail && e.detail.ctx;
      if (!errorBox || (ctx && ctx.response) || e.target === form) return;
      if (e.target && e.target.closest && e.target.closest("article[data-reconnecting]")) return;
      errorBox.textContent = navigator.onLine
        ? t("We couldn't reach the server. Please try again in a moment.")
        : t("You're offline. Please try again once you're back online.");
    });

    // The stream broke before its last event (the network, a restart): the reply it was writing
    // is still on screen as "being written". Say so, and follow it as another tab would (polling
    // its address until it ends); if the server stays out of reach, say that too.
    const notice = (article, text) => {
      let p = article.querySelector(".message-connection");
      if (!p) {
        p = document.createElement("p");
        p.className = "message-notice message-connection";
        p.setAttribute("role", "status");
        article.querySelector(".message-main").appendChild(p);
      }
      p.textContent = text;
    };
    on(form, "htmx:sse:close", () => {
      messages.querySelectorAll('article[data-status="streaming"]:not([hx-get])').forEach((article) => {
        const action = form.getAttribute("action").replace(/\/$/, "");
        if (!/\/messages$/.test(action)) return;  // (no conversation yet: nothing to follow)
        article.setAttribute("hx-get", action + "/" + article.dataset.messageId);
        article.setAttribute("hx-trigger", "load, every 2s");
        article.setAttribute("hx-swap", "outerHTML");
        article.dataset.reconnecting = "0";
        notice(article, t("Connection lost — reconnecting…"));
        htmx.process(article);
      });
    });
    // The device went offline: the stream may hang rather than break, so end it now and follow
    // the reply by its address instead (the server goes on writing it; the page catches up).
    on(window, "offline", () => {
      if (messages.querySelector('article[data-status="streaming"]:not([hx-get])')) htmx.trigger(form, "htmx:abort");
    });
    on(document, "htmx:error", (e) => {
      const article = e.target && e.target.closest && e.target.closest("article[data-reconnecting]");
      if (!article) return;
      const failures = Number(article.dataset.reconnecting) + 1;
      article.dataset.reconnecting = String(failures);
      if (failures < 3) return;
      notice(article, t("We can't reach the server right now. We'll keep trying; or reload the page later."));
      // then ask less often (every 5 s, then 15 s): a server coming back up isn't met by a crowd
      const every = failures >= 6 ? "15s" : "5s";
      if (article.getAttribute("hx-trigger") === "every " + every) return;
      const slower = article.cloneNode(true);
      slower.setAttribute("hx-trigger", "every " + every);
      article.replaceWith(slower);
      htmx.process(slower);
    });

    // A refused or failed request (409, 5xx, no connection): a Retry button may be pressed again.
    on(form, "htmx:finally:request", (e) => {
      const status = e.detail && e.detail.ctx && e.detail.ctx.response && e.detail.ctx.response.status;
      if (status && status < 400) return;
      messages.querySelectorAll("button[data-sent]").forEach((b) => { delete b.dataset.sent; });
    });

    // The server accepted the message and the reply is streaming: clear the composer, keep focus.
    on(form, "htmx:sse:after:connection", () => {
      if (errorBox) errorBox.textContent = "";
      if (clearOnAccept) {
        input.value = "";
        measure();
        // a new turn began: only the latest reply can be retried or regenerated: older buttons go
        // (and "Did this solve it?" goes from the answer before: the conversation moved on)
        messages.querySelectorAll('[data-action="retry"], [data-action="regenerate"], form.outcome').forEach((b) => b.remove());
      }
      input.focus();
    });

    // "Did this solve it?" answered, the buttons are gone and the focus with them. "No": the
    // answer asks what happened, and the customer says it here; "Yes" and "Talk to a person": the
    // focus goes to what the answer now says (the thanks, or how to reach a person).
    let answered = null;
    on(document, "click", (e) => {
      const button = e.target.closest && e.target.closest('form.outcome [data-action^="outcome-"]');
      if (button) answered = { no: button.dataset.action === "outcome-no", message: button.closest("article") };
    });
    on(document, "htmx:after:swap", () => {
      if (!answered) return;
      const { no, message } = answered;
      answered = null;
      const note = !no && message && message.id && document.querySelector(`#${message.id} .outcome-note`);
      if (note) note.focus();
      else input.focus();
    });

    // Keep the newest text in view while it streams, unless the reader scrolled up (then offer
    // to jump there).
    on(document, "htmx:after:swap", () => { keepPlace(); keepVersionPlace(); follow(); });
    on(document, "htmx:sse:after:message", follow);

    // What a screen reader hears of a reply: "Assistant is answering…" when it starts, then
    // the answer (or how it ended) once, when it ends; never the batches in between (the list is
    // not a live region; the reply is aria-busy while it is written). Followed by status, so a
    // reply streamed here, one followed from another tab and a reconnection all read the same.
    const announcer = document.getElementById("announcer");
    const say = (text) => {
      if (!announcer || !text) return;
      if (announcer.textContent === text) {  // (the same words again: cleared first, or not read)
        announcer.textContent = "";
        setTimeout(() => { announcer.textContent = text; }, 150);
      } else announcer.textContent = text;
    };
    const SPOKEN_MAX = 1500;  // characters of an answer read out; the rest is in the list
    const howItEnded = (article) => {
      const notice = article.querySelector(".message-notice");
      if (article.dataset.status !== "complete") {
        return notice ? notice.innerText.trim() : t("The reply ended.");
      }
      const body = article.querySelector(".message-body");
      let text = body ? body.innerText.replace(/\s+/g, " ").trim() : "";
      if (text.length > SPOKEN_MAX) {
        const cut = text.lastIndexOf(" ", SPOKEN_MAX) + 1 || SPOKEN_MAX;  // (at a word)
        text = text.slice(0, cut) + t("… (the rest is in the conversation)");
      }
      return t("The assistant answered:") + " " + text;
    };
    const writing = new Set(Array.from(messages.querySelectorAll('article[data-status="streaming"]'), (a) => a.id));
    const followReplies = () => {
      messages.querySelectorAll('article[data-status="streaming"]').forEach((article) => {
        if (writing.has(article.id)) return;
        writing.add(article.id);
        say(t("Assistant is answering…"));
      });
      writing.forEach((id) => {
        const article = document.getElementById(id);
        if (article && article.dataset.status === "streaming") return;
        writing.delete(id);
        if (article && messages.contains(article)) say(howItEnded(article));
      });
    };
    on(document, "htmx:after:swap", followReplies);

    // The first message of a new conversation gives it an address: show it in the address bar,
    // and send the next messages to that conversation.
    on(form, "chatbot:navigate", (e) => {
      const path = e.detail && e.detail.data;
      if (!path) return;
      const messagesUrl = path.replace(/\/$/, "") + "/messages";
      form.setAttribute("action", messagesUrl);
      form.setAttribute("hx-post", messagesUrl);
      if (path !== location.pathname) history.pushState({ htmx: true }, "", path);
      const chat = document.getElementById("chat");
      if (chat) chat.dataset.conversationId = path.replace(/\/$/, "").split("/").pop();
      const newForm = document.querySelector(".new-form");
      if (newForm) newForm.hidden = false;  // (now there is something to start afresh from)
    });

    // Times are sent in UTC; show them in the reader's own time zone (first-paint.js did so for
    // the page as it loaded).
    const localTimes = window.chatbotLocalTimes || (() => {});
    localTimes(document);
    on(document, "htmx:after:swap", () => localTimes(messages));
    // One "Today" / "Yesterday" / date line a day: a new message, or earlier ones shown above,
    // may bring a line for a day already marked.
    const oneLineADay = () => {
      let day = null;
      messages.querySelectorAll(".day-separator").forEach((line) => {
        if (line.dataset.day === day) line.remove();
        else day = line.dataset.day;
      });
    };
    oneLineADay();
    on(document, "htmx:after:swap", oneLineADay);

    // Copy: a message's own text (the Markdown the assistant wrote), with a short confirmation.
    const copyText = async (text) => {
      if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
      const area = document.createElement("textarea");  // (plain http: the older way)
      area.value = text;
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      const done = document.execCommand("copy");
      area.remove();
      if (!done) throw new Error("copy refused");
    };
    on(messages, "click", async (e) => {
      const button = e.target.closest && e.target.closest('[data-action="copy"]');
      if (!button) return;
      const source = button.closest("article").querySelector(".message-source");
      const label = button.textContent;
      try {
        await copyText(source ? source.value : "");
        button.textContent = t("Copied");
      } catch (err) {
        button.textContent = t("Couldn't copy");
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });

    // A code block's Copy: its code alone (not the language label), with the same confirmation,
    // in the words the server put on the button (data-copied, data-failed: the page's language).
    // Delegated, so the blocks of a reply still streaming in have it too.
    on(messages, "click", async (e) => {
      const button = e.target.closest && e.target.closest('[data-action="copy-code"]');
      if (!button) return;
      const code = button.closest(".code-block").querySelector("pre code");
      if (!button.dataset.label) button.dataset.label = button.textContent;
      if (!button.dataset.name) button.dataset.name = button.getAttribute("aria-label") || "";
      let said;
      try {
        await copyText(code ? code.textContent.replace(/\n$/, "") : "");
        said = button.dataset.copied || "Copied";
      } catch (err) {
        said = button.dataset.failed || "Couldn't copy";
      }
      button.textContent = said;
      button.setAttribute("aria-label", said);
      clearTimeout(button.copyTimer);
      button.copyTimer = setTimeout(() => {
        button.textContent = button.dataset.label;
        button.setAttribute("aria-label", button.dataset.name);
      }, 2000);
    });

    // A suggested question goes through the composer (streamed like any message).
    on(messages, "click", (e) => {
      const suggestion = e.target.closest && e.target.closest('[data-action="suggestion"]');
      if (!suggestion) return;
      e.preventDefault();
      if (busy()) return;
      input.value = suggestion.form.querySelector('input[name="content"]').value;
      measure();
      form.requestSubmit();
    });

    // Stop: its button goes with the reply it stopped (the last event replaces it), so the focus
    // goes to the composer rather than dropping to the page.
    on(messages, "click", (e) => {
      if (e.target.closest && e.target.closest('[data-action="stop"]')) input.focus();
    });

    // Esc, or the composer's Stop (in Send's place while a reply is written), stops the newest
    // reply being written; the focus stays in the composer.
    const stopNewest = () => {
      const stops = messages.querySelectorAll('[data-status="streaming"] [data-action="stop"]');
      const stop = stops[stops.length - 1];
      if (stop) stop.click();
      return !!stop;
    };
    on(document, "keydown", (e) => {
      if (e.key === "Escape" && stopNewest()) e.preventDefault();
    });
    on(form, "click", (e) => {
      if (!(e.target.closest && e.target.closest('[data-action="stop-reply"]'))) return;
      stopNewest();
      input.focus();
    });

  }

  const start = () => {
    if (controller) controller.abort();
    controller = new AbortController();
    shown = document.getElementById("chat");
    setUp(controller.signal);
    sidebarFollows();
  };

  // The sidebar marks the open conversation, and the tab's title follows it.
  const sidebarFollows = () => {
    const chat = document.getElementById("chat");
    if (!chat) return;
    const open = chat.dataset.conversationId;
    document.querySelectorAll("#conversations a[data-conversation-id]").forEach((a) => {
      if (a.dataset.conversationId === open) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    const title = document.getElementById("conversation-title");
    const named = open && title ? title.textContent.trim() : "";
    const site = document.querySelector('meta[name="application-name"]');
    const name = site ? site.content : "";
    document.title = named ? named + " · " + name : name;
  };

  // Dark mode: the toggle switches the page at once and remembers the choice (a cookie the
  // server reads, so the next page paints in it from the start); without JavaScript it is a form.
  const dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const isDark = () => {
    const chosen = document.documentElement.dataset.theme;
    return chosen ? chosen === "dark" : !!(dark && dark.matches);
  };
  const showTheme = () => {
    document.querySelectorAll('[data-action="theme"]').forEach((button) => {
      button.setAttribute("aria-pressed", String(isDark()));
      button.value = isDark() ? "light" : "dark";
    });
  };
  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest('[data-action="theme"]');
    if (!button) return;
    e.preventDefault();
    const theme = isDark() ? "light" : "dark";
    document.documentElement.dataset.theme = theme;
    const scheme = document.querySelector('meta[name="color-scheme"]');
    if (scheme) scheme.content = theme;
    showTheme();
    const token = document.getElementById("csrf-token");
    fetch(button.form.action, {
      method: "POST",
      headers: { "X-Requested-With": "fetch", "X-CSRF-Token": token ? token.content : "" },
      body: new URLSearchParams({ theme }),
    }).catch(() => {});  // (not remembered this time: the page has switched anyway)
  });
  if (dark && dark.addEventListener) dark.addEventListener("change", showTheme);

  // A form sends the page's current CSRF token (the first message may have issued a new one
  // since the form was made), and the language and theme forms come back to the address shown.
  document.addEventListener("submit", (e) => {
    const form = e.target;
    const token = document.getElementById("csrf-token");
    const field = form.querySelector && form.querySelector('input[name="csrf_token"]');
    if (field && token) field.value = token.content;
    const next = form.matches && form.matches(".prefs form") && form.querySelector('input[name="next"]');
    if (next) next.value = location.pathname + location.search;
  }, true);

  // Delete from the keyboard: once the row is gone, the focus goes to the row that took its place
  // (or the one above, or the search box), not back to the top of the page.
  let deleting = null;
  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest('#conversations [data-action="delete"]');
    if (!button) return;
    const row = button.closest("li[data-row]");
    deleting = { row, next: row.nextElementSibling || row.previousElementSibling };
  }, true);
  const focusAfterDelete = () => {
    if (!deleting || deleting.row.isConnected) return;
    const { next } = deleting;
    deleting = null;
    const link = next && next.isConnected && next.querySelector("a[data-conversation-id], a");
    (link || document.getElementById("conversation-search")).focus();
  };

  document.addEventListener("htmx:after:swap", () => {
    if (document.getElementById("chat") !== shown) { start(); showTheme(); }  // another conversation came in
    focusAfterDelete();
    // a conversation that got a message moves to the top: its older row goes
    const seen = new Set();
    document.querySelectorAll("#conversation-list > li[data-row]").forEach((row) => {
      if (seen.has(row.dataset.row)) row.remove();
      else seen.add(row.dataset.row);
    });
    sidebarFollows();
  });

  // Narrow screens: the list is a drawer. The menu button opens it (the focus goes in); Esc, a
  // tap outside it or choosing a conversation close it (the focus comes back).
  const drawer = {
    layout: () => document.querySelector(".layout"),
    button: () => document.querySelector('[data-action="conversations"]'),
    isOpen: () => { const l = drawer.layout(); return !!l && l.classList.contains("drawer-open"); },
    open() {
      const layout = drawer.layout();
      layout.classList.add("drawer-open");
      layout.querySelector(".drawer-backdrop").hidden = false;
      drawer.button().setAttribute("aria-expanded", "true");
      const first = document.querySelector('#conversations a[aria-current="page"]')
        || document.querySelector("#conversations a, #conversations button");
      if (first) setTimeout(() => first.focus(), 50);  // (once the drawer can take the focus)
    },
    close(refocus) {
      const layout = drawer.layout();
      if (!layout || !drawer.isOpen()) return;
      layout.classList.remove("drawer-open");
      layout.querySelector(".drawer-backdrop").hidden = true;
      const button = drawer.button();
      if (button) {
        button.setAttribute("aria-expanded", "false");
        if (refocus) button.focus();
      }
    },
  };
  document.addEventListener("click", (e) => {
    const target = e.target.closest && e.target.closest('[data-action="conversations"], [data-action="close-conversations"], #conversations a[data-conversation-id]');
    if (!target) return;
    if (target.dataset.action === "conversations") {
      e.preventDefault();  // (a link to the list's own page, for a phone without JavaScript)
      drawer.isOpen() ? drawer.close(true) : drawer.open();
    }
    else if (target.dataset.action === "close-conversations") drawer.close(true);
    else drawer.close(false);  // a conversation was chosen: the chat takes the focus
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && drawer.isOpen() && !(e.target.closest && e.target.closest(".rename-form"))) {
      e.preventDefault();
      e.stopImmediatePropagation();
      drawer.close(true);
    }
  }, true);

  // Back and Forward load the page of that address afresh (htmx, history "reload"); should an
  // entry come back still showing another conversation, reload it here.
  const showsItsAddress = () => {
    const match = location.pathname.match(/^\/c\/([^/]+)$/);
    const chat = document.getElementById("chat");
    if (match && chat && chat.dataset.conversationId !== match[1]) location.reload();
  };
  window.addEventListener("popstate", () => setTimeout(showsItsAddress, 400));
  // (a page brought back from the browser's back-forward cache shows what it showed when left)
  window.addEventListener("pageshow", (e) => { if (e.persisted) showsItsAddress(); });

  // The skip link: the focus goes to the message box (without JavaScript, the link's #fragment
  // does it; here the address stays as it is).
  document.addEventListener("click", (e) => {
    const skip = e.target.closest && e.target.closest('[data-action="skip-to-composer"]');
    const box = skip && document.getElementById("composer-input");
    if (!box) return;
    e.preventDefault();
    box.focus();
  });

  // The search box searches as you type (htmx, on the field): Enter doesn't leave the page.
  document.addEventListener("submit", (e) => {
    if (e.target.matches && e.target.matches(".sidebar-search")) e.preventDefault();
  });

  // Rename in the row: the name becomes a field (Enter saves, Esc cancels); the server answers
  // with the row as it now is.
  const endRename = (row, focus) => {
    const editing = row.querySelector(".rename-form");
    if (editing) editing.remove();
    row.querySelector("a[data-conversation-id]").hidden = false;
    if (focus) row.querySelector('[data-action="rename"]').focus();
  };
  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest('#conversations [data-action="rename"]');
    if (!button) return;
    e.preventDefault();
    const row = button.closest("li[data-row]");
    if (row.querySelector(".rename-form")) return;
    const link = row.querySelector("a[data-conversation-id]");
    const rename = document.createElement("form");
    rename.className = "rename-form";
    rename.setAttribute("hx-post", "/c/" + row.dataset.row + "/rename");
    rename.setAttribute("hx-target", "#conv-" + row.dataset.row);
    rename.setAttribute("hx-swap", "outerHTML");
    rename.setAttribute("hx-status:4xx", "target:#rename-error-" + row.dataset.row + " swap:innerHTML");
    rename.setAttribute("hx-status:5xx", "target:#rename-error-" + row.dataset.row + " swap:innerHTML");
    const field = document.createElement("input");
    field.name = "title";
    field.maxLength = 120;
    field.required = true;
    field.value = row.querySelector(".conversation-name").textContent.trim();
    field.setAttribute("aria-label", t("New name for this conversation"));
    const error = document.createElement("span");
    error.className = "rename-error";
    error.id = "rename-error-" + row.dataset.row;
    error.setAttribute("role", "alert");
    rename.append(field, error);
    field.addEventListener("keydown", (k) => {
      if (k.key === "Escape") { k.preventDefault(); k.stopPropagation(); endRename(row, true); }
    });
    link.hidden = true;
    link.after(rename);
    htmx.process(rename);
    field.focus();
    field.select();
  });

  start();
  showTheme();
})();
