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
})();
