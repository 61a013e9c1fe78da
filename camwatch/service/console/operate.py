"""An operator's action asked for from the console, by a form or the JSON API: checked, carried out
through ``service.actions``, recorded, and applied by the daemon at once.

Why one function for both doors: a form and a script must meet the same
checks and leave the same trail; only how they prove who they are (a session
and its CSRF token, or the token itself) and how they are answered (a page, or
JSON) differ, and that stays in ``forms`` and ``api``. Runs in a worker thread
(``run_in_threadpool``): it writes the store, which must not hold the event loop.
"""

from __future__ import annotations

from camwatch.config import CameraConfig
from camwatch.core.errors import ActionError
from camwatch.service import actions
from camwatch.service.console.data import Sources
from camwatch.store.events import Event

#: What may be asked: the form's path, the API's too (POST /api/cameras/{id}/{action}).
ACTIONS = ("accept", "add-reference", "remove-reference", "silence", "unsilence", "disable", "enable")
#: The notice a camera page shows after each (``?done=``); accept and add-reference name their label.
DONE = {"remove-reference": "Reference removed.", "silence": "Alerts silenced: still checked, shown as silenced, "
        "events recorded and logged, not sent out.", "unsilence": "Alerts are sent again.",
        "disable": "Checks disabled: the camera is not checked until enabled.",
        "enable": "Checks enabled: the camera is checked again from now."}


def perform(src: Sources, cam: CameraConfig, action: str, fields: dict[str, str], who: str) -> dict[str, object]:
    """Do ``action`` on ``cam`` for ``who`` with the form's or body's ``fields``; what was done (the API's
    answer), or an ActionError (nothing changed) whose status the caller answers with."""
    store = src.references()
    if store is None:
        raise ActionError("the reference store is not open; try again", 503)
    if action not in ACTIONS:
        raise ActionError(f"unknown action; one of {', '.join(ACTIONS)}", 404)
    who = actions.check_actor(who)
    rt = src.runtimes().get(cam.id)
    if action in ("accept", "add-reference"):
        mode = "accept" if action == "accept" else "add"
        if rt is None or not rt.enabled:
            raise ActionError(f"camera {cam.id} is disabled: it has no current view", 409)
        label = actions.new_reference_label(store, cam, fields.get("label", "default" if mode == "accept" else ""),
                                            mode)
        rt.accept = (label, who, mode)
        return {"camera": cam.id, "action": action, "label": label, "done": False,
                "message": f"the next checked view becomes reference '{label}'"}
    event: Event
    if action == "remove-reference":
        if fields.get("confirm") != "yes":
            raise ActionError("removing a reference needs confirm=yes (tick the box)")
        try:
            ref = int(fields.get("reference", ""))
        except ValueError:
            raise ActionError("reference: a reference id (see the camera's references)") from None
        event = actions.remove_reference(store, cam, ref, who)
    elif action == "silence":
        event = actions.silence(store, cam, actions.silence_period(fields.get("for", "")), who, src.clock())
    elif action == "unsilence":
        event = actions.unsilence(store, cam, who, src.clock())
    else:
        event = actions.set_enabled(store, cam, action == "enable", who)
    src.publish(event)
    src.apply()
    return {"camera": cam.id, "action": action, "done": True, "event": event.id, "message": event.message,
            **{k: v for k, v in event.details.items() if k in ("until", "reference", "label")}}
