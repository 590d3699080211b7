// Parasol console: live parts refreshed from the account's event stream.
// An element with data-live="<event type prefix>" (and data-live-id="<id>"
// when only one instance's events concern it) is sent the htmx trigger
// "live" when a matching event arrives, so it refreshes at once instead of
// polling; its slow "every 30s" trigger covers the time the stream is down.
// EVENT_TYPES (the stream's event names) is prepended by the server.
(function () {
  "use strict";
  if (!window.EventSource || !window.htmx || !document.querySelector("[data-live]")) {
    return;
  }
  function concerns(el, type, body) {
    if (type.indexOf(el.getAttribute("data-live")) !== 0) {
      return false;
    }
    var id = el.getAttribute("data-live-id");
    if (!id) {
      return true;
    }
    var data = (body && body.data) || {};
    return data.id === id || data.instance_id === id;
  }
  function onEvent(e) {
    var body;
    try {
      body = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    // Looked up per event: an htmx swap replaces the elements.
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (concerns(el, e.type, body)) {
        window.htmx.trigger(el, "live");
      }
    });
  }
  // EventSource reconnects by itself (the server's retry:), resuming
  // after the last event id it saw.
  var source = new EventSource("/events/stream");
  // The stream starts at the log's end when it opens, after the page was
  // drawn: whatever happened in between is caught by one refresh of each
  // live part then.
  source.addEventListener("open", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      window.htmx.trigger(el, "live");
    });
  });
  EVENT_TYPES.forEach(function (t) {
    source.addEventListener(t, onEvent);
  });
})();
