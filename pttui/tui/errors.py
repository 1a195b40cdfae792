"""One way to surface a worker that failed unexpectedly: a notification with its error.

Workers are started with ``exit_on_error=False`` (a bug in one flow must not take the
app down); without this, their failure would be silent. Worker.StateChanged does
not bubble, so each screen that runs workers forwards it here.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState


def failed(event: Worker.StateChanged) -> str | None:
    """The one-line error of a worker that just failed, else None."""
    if event.state != WorkerState.ERROR:
        return None
    err = event.worker.error
    first = (str(err).splitlines() or [""])[0][:300]
    return f"{event.worker.group or event.worker.name}: {type(err).__name__}: {first}"


def report(node, event: Worker.StateChanged) -> str | None:
    """Notify about a failed worker; returns the message (None when it did not fail)."""
    text = failed(event)
    if text is not None:
        node.notify(text + " (please report it)", title="internal error", severity="error",
                    timeout=15)
    return text
