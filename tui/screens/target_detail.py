"""One target in full: what it runs, its ledger as a timeline, its last apply's output, its
measurements drawn large, its vars and dashboard link (``d`` copies, ``o`` opens).

Opened with ``enter`` on a target in the console, the replay and the estate matrix. Everything is
read from history (:mod:`sluice.tui.estate_data`), so it says the same in all three; while a
rollout runs it re-reads once a second. The reads run on a thread of their own
(:class:`~sluice.tui.history_reader.HistoryReader`): the screen shows at once with what the
estate file says and fills in when they return. The console keeps one detail screen and shows
each target in it (:meth:`TargetDetailScreen.show`), so opening one builds no widgets.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Static

from sluice.engine.model.estate import Estate
from sluice.engine.model.units import format_duration
from sluice.engine.store.history import History
from sluice.tui.detail_ahead import ReadAhead
from sluice.tui.estate_data import LedgerRow, TargetDetail, placeholder
from sluice.tui.history_reader import HistoryReader
from sluice.tui.screens.reshown import Reshown
from sluice.tui.widgets.keys_footer import KeysFooter
from sluice.tui.widgets.ledger_table import LedgerTable
from sluice.tui.widgets.measure_chart import MeasureChart, legend
from sluice.tui.widgets.output_log import OutputLog

#: Openers tried for ``o``, first found wins (none: the link is copied and shown instead).
OPENERS = ("xdg-open", "open", "wslview")
LEDGER_COLUMNS = ("when", "module", "version", "by", "rollout outcome", "who")
REFRESH_SECONDS = 1.0


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")


class TargetDetailScreen(Reshown, Screen[None]):
    """The detail of ``target``; ``rollout_id`` chooses whose measurements are drawn.

    Args:
        live_lines: the running rollout's output lines for this target, newer than history's
            recorded tail (the console model's); None outside a live rollout.
        live: re-read history once a second (a rollout is running).
    """

    BINDINGS = [
        Binding("escape", "close", "Back", id="detail.close"),
        Binding("d", "copy_link", "Copy link", id="detail.copy_link"),
        Binding("o", "open_link", "Open link", id="detail.open_link"),
    ]

    def __init__(
        self,
        estate: Estate,
        history: History,
        target: str,
        *,
        rollout_id: int | None = None,
        live_lines: Callable[[], Sequence[str]] | None = None,
        live: bool = False,
    ):
        super().__init__(id="target-detail")
        self.estate = estate
        self.history = history
        self.reader = HistoryReader(estate.history)
        #: reads of a target's detail on the reader's thread, ahead of ``enter`` too
        self.ahead = ReadAhead(estate, self.reader)
        self.target = target
        self.rollout_id = rollout_id
        self.live_lines = live_lines
        self.live = live
        #: what is shown; the estate file's part until history's is read (``loaded``)
        self.detail: TargetDetail = placeholder(estate, target)
        self.loaded = False
        self._output_shown: tuple[str, ...] = ()
        self._ledger_shown: list[LedgerRow] | None = None
        self._unpainted = True  # shown (or built) for a target not painted yet
        self._pane_rows: dict[str, int] = {}  # how many rows a pane sized by its text took

    def show(
        self,
        target: str,
        *,
        rollout_id: int | None = None,
        live_lines: Callable[[], Sequence[str]] | None = None,
        live: bool = False,
        detail: TargetDetail | None = None,
    ) -> None:
        """Show ``target`` next time this screen is pushed (the console reuses one screen);
        ``detail``: history's part already read (else the screen reads it, showing the estate
        file's part meanwhile)."""
        self.target, self.rollout_id = target, rollout_id
        self.live_lines, self.live = live_lines, live
        self.detail, self.loaded = detail or placeholder(self.estate, target), detail is not None
        self._unpainted = True

    def compose(self) -> ComposeResult:
        yield Label("", id="detail-title", markup=False)
        with Horizontal(id="detail-panes"):
            with Vertical(id="detail-left"):
                yield Static("", id="detail-runs")
                yield LedgerTable(id="detail-ledger")
                yield Static("", id="detail-vars")
            with Vertical(id="detail-right"):
                yield VerticalScroll(id="detail-charts")
                yield OutputLog(id="detail-output", highlight=False)
        yield KeysFooter()

    async def on_mount(self) -> None:
        self.query_one("#detail-runs").border_title = "runs now"
        self.query_one("#detail-ledger").border_title = "ledger: every module, newest first"
        self.query_one("#detail-vars").border_title = "vars · dashboard"
        self.query_one("#detail-charts").border_title = "measurements"
        self.query_one(LedgerTable).focus()
        self.set_interval(REFRESH_SECONDS, self.refresh_detail)

    async def on_screen_resume(self, event: events.ScreenResume) -> None:
        self.keep_styles(event)
        await self.paint_shown()
        table = self.query_one(LedgerTable)
        if self.focused is not table:  # (focus() repaints the widget, focused or not)
            table.focus()

    async def paint_shown(self) -> None:
        """Paint the target :meth:`show` chose, if not painted yet. The console calls it before
        pushing the (mounted) screen again: its widgets then tell the screen what changed
        before its first frame, rather than asking for a second frame right after it."""
        if not self._unpainted:
            return
        self._unpainted = False
        # (The ledger and output are rebuilt only if they differ from the last target's.)
        await self.paint()
        self.query_one(LedgerTable).cursor = 0
        if not self.loaded:  # what the estate file says until history's part is read
            self.load()

    def on_unmount(self) -> None:
        self.reader.close()

    @work(group="detail-read", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        """Read the detail on the reader's thread, then paint it."""
        target, rollout_id = self.target, self.rollout_id
        try:
            detail = await self.ahead.read(target, rollout_id)
        except Exception as exc:  # a busy or vanished history: say so, the next refresh retries
            self.query_one("#detail-title", Label).update(
                f" target {target} · cannot read its history: {exc}"
            )
            return
        if target != self.target or rollout_id != self.rollout_id:
            return  # another target was shown meanwhile
        self.detail, self.loaded = detail, True
        await self.paint()

    async def refresh_detail(self) -> None:
        if self.live and self.loaded and self.is_current:
            self.load()

    async def paint(self) -> None:
        d = self.detail
        record = d.rollout
        if not self.loaded:
            measured = "reading its history…"
        elif record:
            measured = f"measurements of rollout #{record.id} ({record.module} → {record.version})"
        else:
            measured = "no measurements recorded"
        self.query_one("#detail-title", Label).update(
            f" target {d.name} · channel {d.channel} · executor {d.executor} · {measured}",
            layout=False,  # one line, as wide as the screen: no layout for new words
        )
        runs = Text()
        for module, version in d.modules.items():
            runs.append("\n" if runs else "")
            runs.append(f"{module} ", style="bold")
            runs.append(version)
        self._update_sized("#detail-runs", runs)
        self._paint_ledger()
        self._paint_vars()
        self._paint_output()
        # Last: mounting charts awaits, and a frame may be drawn meanwhile — with the rest done.
        await self._paint_charts()

    def _paint_ledger(self) -> None:
        if self.detail.ledger == self._ledger_shown and self._ledger_shown is not None:
            return  # unchanged: keep the cursor and scroll where the reader left them
        self._ledger_shown = list(self.detail.ledger)
        table = self.query_one(LedgerTable)
        if not self.loaded:
            self._ledger_shown = None  # nothing of this target's shown yet
            table.set_table(LEDGER_COLUMNS, [])
            return
        rows = [
            (
                _when(row.since),
                row.module,
                row.version,
                f"#{row.rollout_id} {row.action}",
                row.outcome,
                row.actor,
            )
            for row in self.detail.ledger
        ]
        table.set_table(
            LEDGER_COLUMNS, rows or [("—", "no change recorded", "(initial versions)", "", "", "")]
        )

    def _paint_vars(self) -> None:
        text = Text()
        for key, value in self.detail.vars.items():
            text.append(f"{key}", style="bold")
            text.append(f" = {value}\n")
        if not self.detail.vars:
            text.append("no vars\n", style="dim")
        link = self.detail.dashboard
        text.append(link or "no dashboard in the estate file", style="underline" if link else "dim")
        if link:
            text.append("  (d copies · o opens)", style="dim")
        self._update_sized("#detail-vars", text)

    def _update_sized(self, selector: str, text: Text) -> None:
        """Update a pane whose height is its lines': laid out again only when their count
        changes (a layout is a frame of its own under load; most targets' panes are as tall)."""
        pane = self.query_one(selector, Static)
        width = max(1, pane.content_size.width)
        rows = sum(1 + max(0, cell_len(line) - 1) // width for line in text.plain.split("\n"))
        pane.update(text, layout=self._pane_rows.get(selector) != rows)
        self._pane_rows[selector] = rows

    async def _paint_charts(self) -> None:
        box = self.query_one("#detail-charts", VerticalScroll)
        # Until history is read the charts (another target's, in a reused screen) are hidden,
        # not removed: the next target's usually has the same checks and reuses them.
        box.styles.visibility = "visible" if self.loaded else "hidden"
        if not self.loaded:
            return
        charts = list(box.query(MeasureChart))
        series = self.detail.series
        if charts and len(charts) == len(series):
            for chart, s, label in zip(charts, series, box.query(".chart-legend"), strict=False):
                chart.series = s
                label.update(legend(s), layout=False)  # type: ignore[attr-defined]  # (2 lines)
            return
        if not series and not charts and len(box.children) == 1:
            return  # the last target's "no measurements" line, as it is
        await box.remove_children()
        if not series:
            await box.mount(Label("no measurements of this target recorded", classes="dim"))
            return
        widgets = []
        for s in series:
            widgets += [Static(legend(s), classes="chart-legend"), MeasureChart(s)]
        await box.mount_all(widgets)

    def _paint_output(self) -> None:
        log = self.query_one("#detail-output", OutputLog)
        title, lines = self._output()
        log.border_title = title
        if lines != self._output_shown:
            self._output_shown = lines
            log.replace(lines)

    def _output(self) -> tuple[str, tuple[str, ...]]:
        """The output pane's title and lines: a finished apply's whole output from its spool;
        while one runs, the console's live lines; else the head and tail history recorded."""
        if not self.loaded:
            return "last apply", ("reading history…",)
        last = self.detail.last_apply
        live = tuple(self.live_lines()) if self.live_lines is not None else ()
        if last is None:
            if live:
                return "last apply: running", live
            return "last apply: none recorded", ("no apply of this target is recorded",)
        took = "" if last.duration is None else f" in {format_duration(last.duration)}"
        title = (
            f"last apply: #{last.rollout_id} {last.action} {last.from_version} → "
            f"{last.version} · {last.outcome}{took}"
        )
        spooled = last.spooled
        if spooled is not None:
            older = (
                (f"… {spooled.dropped} older lines in {spooled.path}",) if spooled.dropped else ()
            )
            return f"{title} · {len(spooled.lines)} lines, all of it", (*older, *spooled.lines)
        if live:
            return title, live
        recorded = (
            *((f"$ {last.command}",) if last.command else ()),
            *last.lines,
            *((f"{last.outcome}: {last.reason}",) if last.reason else ()),
        )
        return f"{title} · as recorded (head and tail)", recorded

    # ------------------------------------------------------------------ keys

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_copy_link(self) -> None:
        link = self.detail.dashboard
        if not link:
            self.notify(f"{self.target} has no dashboard in the estate file", severity="warning")
            return
        self.app.copy_to_clipboard(link)
        self.notify(f"{link}\n(copied to the clipboard)", title="dashboard", markup=False)

    def action_open_link(self) -> None:
        link = self.detail.dashboard
        if not link:
            self.notify(f"{self.target} has no dashboard in the estate file", severity="warning")
            return
        opener = next((found for name in OPENERS if (found := shutil.which(name))), None)
        if opener is None:
            self.app.copy_to_clipboard(link)
            self.notify(
                f"no browser opener ({', '.join(OPENERS)}) here: {link} copied instead",
                severity="warning",
                markup=False,
            )
            return
        # The URL is one argument, never a shell string; the opener outlives nothing of ours.
        subprocess.Popen(  # noqa: S603
            [opener, link],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.notify(f"opening {link}", title="dashboard", markup=False)
