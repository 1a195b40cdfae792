"""A real torch.load (l), in a child process a worker drives without blocking.

Shows elapsed time while it runs (escape cancels: the child's process group is
killed, its memory freed), then the classified result and the fixes that apply.
Choosing a fix retries with it; a fix that runs the file's code goes through the
typed confirmation first, and saves the loaded tensors as safetensors, which ``o``
then opens in place of the checkpoint.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, LoadingIndicator, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, get_current_worker

from pttui.core.base import humanize as hz
from pttui.core.base import ReadError
from pttui.tui import errors
from pttui.tui.screens.confirm import unsafe_load_screen


class LoadScreen(ModalScreen[Any]):
    """Dismisses with ``(LoadResult | None, LoadPolicy, open)``: the last result, the
    policy, and the saved tensors' path when the user asked to open them (else None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel / close"),
                Binding("o", "open_saved", "Open the saved tensors", show=False)]

    class Tick(Message):
        def __init__(self, seconds: float, state: str) -> None:
            super().__init__()
            self.seconds, self.state = seconds, state

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, LoadScreen.Tick)

    class Done(Message):
        def __init__(self, result: Any, error: str | None) -> None:
            super().__init__()
            self.result, self.error = result, error

    def __init__(self, path: str, policy: Any, globals_scan: Any = None,
                 unsafe: bool = False) -> None:
        super().__init__()
        self.path, self.policy, self.scan = path, policy, globals_scan
        self.result: Any = None
        self.running = False
        self.start_unsafe = unsafe

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("", classes="dialog-title", id="load-title")
            with Horizontal(id="load-running"):
                yield LoadingIndicator()
                yield Static("", id="load-elapsed")
            with VerticalScroll(id="load-body"):
                yield Static("", id="load-result")
                yield OptionList(id="load-fixes")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="load-cancel")

    def on_mount(self) -> None:
        self.query_one("#load-fixes").display = False
        if self.start_unsafe:
            self._ask_unsafe(self.policy.with_changes({"weights_only": False}))
        else:
            self.attempt(self.policy)

    def attempt(self, policy: Any, consent: bool = False, force: bool = False,
                save_to: str | None = None) -> None:
        self.policy = policy
        self.running = True
        self.app.busy.add("load")  # type: ignore[attr-defined]
        title = Text(f"torch.load({os.path.basename(self.path)}, weights_only="
                     f"{policy.weights_only}, map_location={policy.map_location!r})",
                     style="bold red" if not policy.weights_only else "bold")
        self.query_one("#load-title", Static).update(title)
        self.query_one("#load-running").display = True
        self.query_one("#load-fixes").display = False
        self.query_one("#load-result", Static).update(
            Text("running in a separate process; escape cancels", style="dim"))
        self.query_one("#load-cancel", Button).label = "Cancel"
        self._run(policy, consent, force, save_to)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _run(self, policy: Any, consent: bool, force: bool, save_to: str | None) -> None:
        from pttui.core.load import LoadAttempt

        worker = get_current_worker()
        try:
            att = LoadAttempt(self.path, policy, consent=consent, force=force,
                              save_to=save_to).start()
        except (ReadError, ValueError) as err:
            self.post_message(self.Done(None, str(err)))
            return
        t0 = time.monotonic()
        while (result := att.poll()) is None:
            if worker.is_cancelled:
                result = att.cancel()
                break
            self.post_message(self.Tick(time.monotonic() - t0, att.state))
            time.sleep(0.1)
        self.post_message(self.Done(result, None))

    def on_load_screen_tick(self, message: Tick) -> None:
        word = "waiting for another load" if message.state == "queued" else "loading"
        self.query_one("#load-elapsed", Static).update(f"{word}… {message.seconds:.1f}s")

    def on_load_screen_done(self, message: Done) -> None:
        self.running = False
        self.app.busy.discard("load")  # type: ignore[attr-defined]
        self.query_one("#load-running").display = False
        self.query_one("#load-cancel", Button).label = "Close"
        if message.error:
            self.query_one("#load-result", Static).update(Text(message.error, style="red"))
            return
        r = self.result = message.result
        self.query_one("#load-result", Static).update(result_text(r))
        fixes = r.failure.fixes if r.failure is not None else []
        ol = self.query_one("#load-fixes", OptionList)
        ol.clear_options()
        for i, fix in enumerate(fixes):
            if not runnable(fix):
                continue  # advice: shown in the text above, not offered as a choice
            label = Text(("DANGER: " if fix.unsafe else "try: ") + fix.description,
                         style="bold red" if fix.unsafe else "")
            ol.add_option(Option(label, id=str(i)))
        ol.display = ol.option_count > 0
        if ol.option_count:  # a load that runs the file's code is never the one Enter picks
            safe = [j for j, opt in enumerate(ol.options)
                    if not fixes[int(opt.id or 0)].unsafe]
            ol.highlighted = safe[0] if safe else None
            ol.focus()
        allowed = (r.policy or {}).get("allow_globals") or []
        word = "succeeded" if r.ok else "failed: " + r.kind
        if r.ok and allowed:
            word += f" with {len(allowed)} global{'s' if len(allowed) != 1 else ''} allowed: " \
                + ", ".join(allowed)
        self.app.notify(f"load {word}", severity="information" if r.ok else "warning")

    @on(OptionList.OptionSelected, "#load-fixes")
    def _fix(self, event: OptionList.OptionSelected) -> None:
        fix = self.result.failure.fixes[int(event.option.id or 0)]
        policy = self.policy.apply(fix)
        if fix.unsafe or not policy.weights_only:
            self._ask_unsafe(policy)
        else:
            self.attempt(policy, force=fix.force)

    def _ask_unsafe(self, policy: Any) -> None:
        from pttui.core.load import default_destination

        scan = self.scan
        try:
            save_to: str | None = default_destination(self.path)
        except (ReadError, OSError) as err:
            save_to = None
            self.app.notify(f"the tensors cannot be saved: {err}", severity="warning")
        if policy.map_location == "meta":
            save_to = None  # meta tensors hold no data
        screen = unsafe_load_screen(self.path, list(getattr(scan, "dangerous", [])),
                                    list(getattr(scan, "blocked", [])), save_to)

        def answer(yes: bool | None) -> None:
            if yes:
                self.attempt(policy, consent=True, save_to=save_to)
            elif self.result is None:
                self.dismiss((None, self.policy.with_changes({"weights_only": True}), None))

        self.app.push_screen(screen, answer)

    @on(Button.Pressed, "#load-cancel")
    def action_cancel(self) -> None:
        if self.running:
            self.workers.cancel_group(self, "load")
            return
        self.dismiss((self.result, self._kept_policy(), None))

    def action_open_saved(self) -> None:
        saved = getattr(self.result, "saved", None) if not self.running else None
        if saved:
            self.dismiss((self.result, self._kept_policy(), saved["path"]))

    def _kept_policy(self) -> Any:
        return self.policy if self.policy.weights_only else \
            self.policy.with_changes({"weights_only": True})  # unsafe is never sticky

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        text = errors.report(self, event)
        if text is not None:
            self.post_message(self.Done(None, text))


def result_text(r: Any) -> Text:
    pol = r.policy or {}
    how = f"weights_only={pol.get('weights_only')}, map_location={pol.get('map_location')}"
    if r.ok:
        s = r.summary or {}
        t = Text(f"loaded in {r.seconds:.1f}s ({how})\n", style="bold green")
        t.append(Text(f"{s.get('type')}: {s.get('tensor_count', 0)} tensors, "
                      f"{hz.nbytes(s.get('tensor_bytes') or 0)}"))
        if pol.get("allow_globals"):
            t.append(Text(f"\nallowed globals ({len(pol['allow_globals'])}): "
                          + ", ".join(pol["allow_globals"]), style="cyan"))
        for w in r.warnings[:3]:
            t.append(Text("\nwarning: " + w, style="yellow"))
        if r.saved:
            sv = r.saved
            t.append(Text(f"\n\ntensors saved to {sv['path']} ({sv['tensors']} tensors, "
                          f"{hz.nbytes(sv['bytes'])})", style="bold"))
            for why in (sv.get("skipped") or [])[:5]:
                t.append(Text(f"\nnot saved: {why}", style="yellow"))
            t.append(Text("\no opens them here: the repair goes on from that file, "
                          "with nothing of the pickle left", style="cyan"))
        if pol.get("network"):
            t.append(Text(f"\nnetwork of the load process: {pol['network']}", style="dim"))
        return t
    f = r.failure
    t = Text(f"FAILED: {r.kind} ({how})\n", style="bold red")
    if f is not None:
        if f.headline:
            t.append(Text(f"torch: {f.headline}\n", style="red"))
        t.append(Text(f.explanation))
        advice = [x for x in f.fixes if not runnable(x)]
        for x in advice:
            t.append(Text("\n\nwhat to do: " + x.description, style="cyan"))
        codes = [x.code for x in f.fixes if x.code and not x.unsafe]
        if codes:
            t.append("\n\nin your own script:", style="bold")
            for code in codes:
                t.append(Text("\n  " + code, style="green"))
        if any(runnable(x) for x in f.fixes):
            t.append("\n\nretry here with (enter):", style="bold")
    return t


def runnable(fix: Any) -> bool:
    """A fix the dialog can retry with (a policy change, skipping the memory check, or
    the consented unsafe load); any other is advice to read, never a choice that does
    nothing."""
    return bool(fix.changes) or fix.force or fix.unsafe
