/*
 * dtlens app: keyboard and action buttons -> numbered events for the server.
 *
 * Keys: ArrowLeft = left (0), ArrowRight = right (1), ArrowUp = forward (2),
 * p = pickup (3), d = drop (4), t = toggle (5), n = done (6), f = follow the model.
 * Buttons with a data-action="<index>" or data-follow attribute do the same on click.
 *
 * Every press becomes {id, action} or {id, follow: true} with an increasing id; the last
 * MAX_EVENTS are written to the "key-events" store, so the server (which applies each
 * id once) loses no press even when two presses reach it in one request.
 *
 * Focus: the keys go to the agent wherever the focus is, unless a text box has it (an
 * <input> you type in, such as a slider's number box, or a <textarea>) or an open
 * dropdown menu does. The listener runs in the capture phase on the window, before any
 * component sees the key, and stops it there: a focused radio group does not change
 * its choice (which would reset the episode) and a focused slider does not move.
 * ArrowDown, which is no action, is kept from those controls too (on the page itself
 * it still scrolls). Other keys (Tab, Home, End, Page Up/Down, Space) work as usual.
 *
 * Enter in a slider's number box (the RTG box) applies the typed value at once, as
 * leaving the box does, and keeps the focus there.
 */
(function () {
    "use strict";
    var KEY_TO_ACTION = {ArrowLeft: 0, ArrowRight: 1, ArrowUp: 2, p: 3, d: 4, t: 5, n: 6};
    var FOLLOW_KEY = "f";
    var STORE_ID = "key-events";
    var MAX_EVENTS = 16;
    // <input> types one types into (a radio button, checkbox or range is not a text box)
    var TEXT_INPUTS = ["", "text", "number", "search", "email", "url", "tel", "password"];
    var nextId = 1;
    var events = [];

    function send(event) {
        var clientside = window.dash_clientside;
        if (!clientside || typeof clientside.set_props !== "function") {
            return;  // the page is still loading
        }
        event.id = nextId++;
        events.push(event);
        if (events.length > MAX_EVENTS) {
            events = events.slice(events.length - MAX_EVENTS);
        }
        clientside.set_props(STORE_ID, {data: {events: events.slice()}});
    }

    function isTextBox(target) {
        if (!target || !target.tagName) {
            return false;
        }
        if (target.isContentEditable || target.tagName === "TEXTAREA") {
            return true;
        }
        if (target.tagName !== "INPUT") {
            return false;
        }
        var type = (target.getAttribute("type") || "").toLowerCase();
        return TEXT_INPUTS.indexOf(type) >= 0;
    }

    function inOpenMenu(target) {
        // a dropdown's open list of options (Dash 4: .dash-dropdown-options)
        return Boolean(target && target.closest && target.closest(
            ".dash-dropdown-options, .dash-dropdown-content, [role='dialog']"
        ));
    }

    function isPage(target) {
        return !target || target === document.body || target === document.documentElement;
    }

    function applyOnEnter(e) {
        var box = e.target;
        if (e.key !== "Enter" || !box.closest || !box.closest(".dash-slider-container")) {
            return;
        }
        e.preventDefault();
        box.blur();  // the slider applies its box's value when the box loses the focus
        box.focus();
        if (typeof box.select === "function") {
            box.select();
        }
    }

    window.addEventListener("keydown", function (e) {
        if (isTextBox(e.target)) {
            applyOnEnter(e);
            return;  // typing: the keys belong to the box
        }
        if (e.ctrlKey || e.metaKey || e.altKey || inOpenMenu(e.target)) {
            return;
        }
        var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
        var isAction = Object.prototype.hasOwnProperty.call(KEY_TO_ACTION, key);
        if (!isAction && key !== FOLLOW_KEY && !(key === "ArrowDown" && !isPage(e.target))) {
            return;
        }
        // ours: no radio group, slider or tab list may act on it
        e.preventDefault();
        e.stopPropagation();
        if (e.repeat) {
            return;  // a held key steps once
        }
        if (isAction) {
            send({action: KEY_TO_ACTION[key]});
        } else if (key === FOLLOW_KEY) {
            send({follow: true});
        }
    }, true);

    document.addEventListener("click", function (e) {
        var button = e.target && e.target.closest ? e.target.closest("[data-action], [data-follow]") : null;
        if (!button || button.tagName !== "BUTTON") {
            return;
        }
        if (button.hasAttribute("data-follow")) {
            send({follow: true});
        } else {
            send({action: parseInt(button.getAttribute("data-action"), 10)});
        }
        button.blur();  // keep arrow keys for the env, not the focused button
    });
})();
