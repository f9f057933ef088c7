// cartclass: small progressive enhancements on top of htmx. Everything here is optional:
// every page works without JavaScript.
(function () {
  "use strict";

  // Focus after a form comes back with errors (422) is not handled here: the error summary
  // carries autofocus, which htmx honours in swapped content and the browser on a full page.
  // (A handler on htmx:afterSwap never saw the summary: the form swaps itself outerHTML,
  // so the event's target is the old, detached form.)

  // Failed htmx requests (a 500, a lost connection) would otherwise do nothing visible.
  function showError(message) {
    var box = document.getElementById("htmx-error");
    if (!box) return;
    box.textContent = "";
    var p = document.createElement("p");
    p.className = "flash flash-error";
    p.textContent = message;
    box.appendChild(p);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 401) return; // signed out: htmx follows HX-Redirect to sign-in
    if (status === 403) {
      showError("You don't have permission to do that. Reload the page to see what you can do.");
    } else {
      showError("Something went wrong (error " + status + "). Nothing was lost; try again, or reload the page.");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    showError("cartclass could not be reached. Check your connection and try again; your input is still here.");
  });
  document.addEventListener("htmx:beforeRequest", function () {
    var box = document.getElementById("htmx-error");
    if (box) box.textContent = "";
  });

  // Drafts: while an admin types in a form marked data-draft-key, keep a copy in this tab's
  // sessionStorage. If the session expires and saving sends them to sign in, the form is
  // filled in again when they come back, so a half-filled form is never lost silently.
  function draftFields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && el.type !== "hidden" && el.type !== "submit";
    });
  }
  function saveDraft(form) {
    var data = {};
    draftFields(form).forEach(function (el) { data[el.name] = el.value; });
    try { sessionStorage.setItem(form.dataset.draftKey, JSON.stringify(data)); } catch (e) { /* storage full or off */ }
  }
  function restoreDraft(form) {
    var raw = null;
    try { raw = sessionStorage.getItem(form.dataset.draftKey); } catch (e) { return; }
    if (!raw) return;
    var data;
    try { data = JSON.parse(raw); } catch (e) { return; }
    var changed = false;
    draftFields(form).forEach(function (el) {
      if (Object.prototype.hasOwnProperty.call(data, el.name) && el.value !== data[el.name]) {
        el.value = data[el.name];
        changed = true;
      }
    });
    if (changed) {
      var note = document.createElement("p");
      note.className = "flash flash-info";
      note.setAttribute("role", "status");
      note.setAttribute("data-testid", "draft-restored");
      note.textContent = "Your unsaved changes from before were put back. Check them, then Save.";
      form.insertBefore(note, form.firstChild);
    }
  }
  function clearDraft(key) {
    try { sessionStorage.removeItem(key); } catch (e) { /* ignore */ }
  }
  function initDrafts(root) {
    var forms = root.querySelectorAll ? root.querySelectorAll("form[data-draft-key]") : [];
    Array.prototype.forEach.call(forms, function (form) {
      if (form.dataset.draftReady) return;
      form.dataset.draftReady = "1";
      if (form.dataset.draftRestore === "true") restoreDraft(form);
      form.addEventListener("input", function () { saveDraft(form); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { initDrafts(document); });
  document.addEventListener("htmx:load", function (event) { initDrafts(event.detail.elt); });
  // Signing out on purpose (a shared computer in a staff room) leaves no drafts behind for
  // the next person; a session that merely expired keeps them.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.getAttribute("action") !== "/auth/logout") return;
    try {
      for (var i = sessionStorage.length - 1; i >= 0; i--) {
        var key = sessionStorage.key(i);
        if (key && key.indexOf("cartclass-draft:") === 0) sessionStorage.removeItem(key);
      }
    } catch (e) { /* storage off */ }
  });
  // A save that succeeded redirects with HX-Redirect: the draft is no longer needed.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    var xhr = event.detail.xhr;
    if (form && form.dataset && form.dataset.draftKey && xhr && xhr.status === 200 && xhr.getResponseHeader("HX-Redirect")) {
      clearDraft(form.dataset.draftKey);
    }
  });
  // Suggestions under the id boxes (views/suggest.templ): an ARIA combobox whose listbox
  // htmx fills. Arrow keys move through the options, Enter or a click adds the chosen id
  // on a new line of the box, Escape closes the list. The finder is shown only here, so
  // without JavaScript the boxes work as plain text.
  function options(list) {
    return Array.prototype.filter.call(list.querySelectorAll("[role=option]"), function (o) {
      return o.getAttribute("aria-disabled") !== "true";
    });
  }
  function setActive(input, list, next) {
    options(list).forEach(function (o) { o.setAttribute("aria-selected", o === next ? "true" : "false"); });
    if (next) {
      input.setAttribute("aria-activedescendant", next.id);
      next.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }
  function closeList(input, list) {
    list.innerHTML = "";
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }
  function choose(input, list, option) {
    var box = document.getElementById(input.dataset.suggestTarget);
    var status = input.parentNode.querySelector("[data-suggest-status]");
    if (!box || !option) return;
    var id = option.dataset.value;
    var have = box.value.split(/[\r\n,\t]+/).map(function (s) { return s.trim(); });
    if (have.indexOf(id) < 0) {
      var v = box.value.replace(/\s+$/, "");
      box.value = (v ? v + "\n" : "") + id;
      box.dispatchEvent(new Event("input", { bubbles: true })); // keeps the draft
      if (status) status.textContent = "Added " + option.dataset.label + ".";
    } else if (status) {
      status.textContent = option.dataset.label + " is already in the list.";
    }
    input.value = "";
    closeList(input, list);
  }
  function initSuggest(root) {
    root.querySelectorAll("[data-suggest]").forEach(function (el) { el.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", function () { initSuggest(document); });
  document.addEventListener("htmx:load", function (event) { initSuggest(event.detail.elt); });
  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (!input || !input.dataset || !input.dataset.suggestTarget || event.isComposing) return;
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var opts = options(list);
    var current = list.querySelector("[aria-selected=true]");
    var i = opts.indexOf(current);
    switch (event.key) {
      case "ArrowDown":
        event.preventDefault();
        setActive(input, list, opts[Math.min(i + 1, opts.length - 1)] || null);
        break;
      case "ArrowUp":
        event.preventDefault();
        setActive(input, list, i > 0 ? opts[i - 1] : null); // above the first: back to the text
        break;
      case "Enter":
        event.preventDefault(); // never submits the association form
        choose(input, list, current || (opts.length === 1 ? opts[0] : null));
        break;
      case "Escape":
        if (opts.length || list.children.length) {
          event.preventDefault();
          closeList(input, list);
        }
        break;
    }
  });
  document.addEventListener("mousedown", function (event) {
    var option = event.target.closest && event.target.closest(".suggestions [role=option]");
    if (!option || option.getAttribute("aria-disabled") === "true") return;
    event.preventDefault(); // keep the focus in the finder
    var list = option.parentNode;
    var input = document.querySelector("[aria-controls='" + list.id + "']");
    if (input) choose(input, list, option);
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.detail.target;
    if (!list || list.getAttribute("role") !== "listbox") return;
    var input = document.querySelector("[aria-controls='" + list.id + "']");
    if (!input) return;
    // An answer for a finder the admin has left, or emptied, opens nothing.
    if (input.value.trim() === "" || document.activeElement !== input) { closeList(input, list); return; }
    input.setAttribute("aria-expanded", list.children.length ? "true" : "false");
    input.removeAttribute("aria-activedescendant");
  });

  // Leaving the finder (Tab, a click elsewhere) closes its list; a click on an option keeps
  // the focus (mousedown above), so it still chooses.
  document.addEventListener("focusout", function (event) {
    var input = event.target;
    if (!input || !input.dataset || !input.dataset.suggestTarget) return;
    var list = document.getElementById(input.getAttribute("aria-controls"));
    if (list) closeList(input, list);
  });

  // "/" jumps to the page's search box (data-search-shortcut), as on GitHub or Gmail,
  // unless the key is typed into a field or pressed with a modifier.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    var t = event.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var box = document.querySelector("[data-search-shortcut]");
    if (!box) return;
    event.preventDefault();
    box.focus();
    box.select();
  });
})();
