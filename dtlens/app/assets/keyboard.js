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
 * Keys are ignored while typing in an input or using a slider / dropdown.
 */
(function () {
    "use strict";
    var KEY_TO_ACTION = {ArrowLeft: 0, ArrowRight: 1, ArrowUp: 2, p: 3, d: 4, t: 5, n: 6};
    var FOLLOW_KEY = "f";
    var STORE_ID = "key-events";
    var MAX_EVENTS = 16;
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

    function isEditing(target) {
        if (!target || !target.closest) {
            return false;
        }
        return Boolean(target.closest(
            "input, textarea, select, [contenteditable='true'], [role='slider'], " +
            "[role='combobox'], [role='listbox'], .rc-slider, .dash-dropdown"
        ));
    }

    document.addEventListener("keydown", function (e) {
        if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || isEditing(e.target)) {
            return;
        }
        var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
        if (Object.prototype.hasOwnProperty.call(KEY_TO_ACTION, key)) {
            e.preventDefault();
            send({action: KEY_TO_ACTION[key]});
        } else if (key === FOLLOW_KEY) {
            e.preventDefault();
            send({follow: true});
        }
    });

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
