#!/usr/bin/env python3
"""inspector_curses: a live terminal view of a running backstage engine.

    python inspector_curses.py [SOCKET]      # attach; with no SOCKET, find running engines
    python inspector_curses.py --once        # print one snapshot as plain text and exit

The engine must run with ``Engine(inspector=True)`` (or a socket path); it
then writes a JSON snapshot per interval on a Unix socket (see
docs/inspector.md).  Keys: ``s`` sort (msgs/s, id, inbox), ``/`` filter by id
or type, ``g`` group by type, arrows and PgUp/PgDn move, Enter shows the
selected actor, ``k`` stops it (after a y/n question), ``p`` pauses, ``q`` quits.

Standard library only; with curses-menu installed (``pip install
curses-menu``) the engine picker is a curses-menu menu.  The program is three
parts kept apart, as in ranger and glances: the model (``Model``: the last
snapshot and what the user chose), the drawing (``View``, through ``Painter``,
which never lets a curses error out), and the input (``App.press``, one key
table per mode).
"""

from __future__ import annotations

import argparse
import collections
import curses
import glob
import json
import locale
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

FORMAT = 1                      # the feed version this inspector reads
RECONNECT_EVERY = 1.0           # seconds between two reconnection attempts
FRAME_MS = 100                  # input poll timeout, and so the frame period
HISTORY = 120                   # samples of the total rate kept for the sparkline
ACTOR_HISTORY = 60              # samples of each actor's rate kept for the detail view
SORTS = ("msgs/s", "id", "inbox")
# PROGRAM-PID.sock, or PROGRAM-PID.N.sock for the Nth engine of a process.
_SOCKET_NAME = re.compile(r"^(?P<program>.+)-(?P<pid>\d+)(?:\.\d+)?\.sock$")

# What to do when no engine is found; said by --once, the picker and main().
START_ONE = ("start a program with backstage.Engine(inspector=True) (try `make demo`), "
             "or pass the socket path: python inspector_curses.py /path/to/engine.sock")

Snapshot = dict[str, Any]


###############################################################################
# Finding engines
# Live sockets in the per-user directories where backstage puts them.
###############################################################################

def socket_dirs() -> list[str]:
    """Where engines put their sockets: the same rule as backstage.inspector_dir()."""
    dirs = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        dirs.append(os.path.join(runtime, "backstage"))
    dirs.append(os.path.join(tempfile.gettempdir(), f"backstage-{os.getuid()}"))
    return dirs


def is_live(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


class EngineSocket:
    """A socket found on disk: its path, and the program and pid its name tells."""

    def __init__(self, path: str) -> None:
        self.path = path
        match = _SOCKET_NAME.match(os.path.basename(path))
        self.program = match["program"] if match else os.path.basename(path)
        self.pid = int(match["pid"]) if match else None

    def label(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "pid ?"
        return f"{self.program:<24} {pid:<12} {self.path}"


def find_engines(dirs: Iterable[str] | None = None) -> list[EngineSocket]:
    """Live engine sockets, newest first; stale files are skipped."""
    found = []
    for directory in dirs if dirs is not None else socket_dirs():
        for path in glob.glob(os.path.join(glob.escape(directory), "*.sock")):
            if is_live(path):
                found.append(EngineSocket(path))
    found.sort(key=lambda e: _mtime(e.path), reverse=True)
    return found


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


###############################################################################
# The feed connection
# Non-blocking reads of JSON lines, commands out, reconnection.
###############################################################################

class Connection:
    """One engine's feed.  ``poll()`` returns the lines that arrived, never blocks."""

    def __init__(self, path: str, program: str | None = None) -> None:
        self.path = path
        self.program = program          # to find the engine again after a restart
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self) -> bool:
        for path in self._candidates():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(1.0)
                sock.connect(path)
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self.sock, self.path = sock, path
            self.buffer.clear()
            return True
        return False

    def _candidates(self) -> list[str]:
        paths = [self.path]
        if self.program is not None and not os.path.exists(self.path):
            # A restarted engine has a new pid, so a new socket name.
            paths += [e.path for e in find_engines([os.path.dirname(self.path)])
                      if e.program == self.program]
        return paths

    def poll(self) -> list[dict[str, Any]]:
        if self.sock is None:
            return []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                break
            self.buffer += data
        lines = []
        while (end := self.buffer.find(b"\n")) >= 0:
            raw = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                lines.append(obj)
        return lines

    def send(self, command: dict[str, Any]) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendall(json.dumps(command).encode() + b"\n")
            return True
        except OSError:
            self.close()
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def read_one_snapshot(path: str, timeout: float = 5.0) -> Snapshot:
    """Connect, and return the first snapshot the engine sends (it sends one at once)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        with sock.makefile("rb") as lines:
            for raw in lines:
                obj = json.loads(raw)
                if obj.get("type") == "snapshot":
                    return obj
    raise ConnectionError(f"the engine at {path} closed the feed before any snapshot")


###############################################################################
# Formatting
# Numbers, durations, bars and sparklines as short strings.
###############################################################################

SPARKS_UNICODE = "▁▂▃▄▅▆▇█"
SPARKS_ASCII = "_.:-=+*#"


def fmt_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def fmt_count(value: int) -> str:
    return f"{value:,}" if value < 10**9 else f"{value / 1e9:.2f}G"


def fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def sparkline(values: Iterable[float], width: int, chars: str = SPARKS_UNICODE) -> str:
    values = list(values)[-width:] if width > 0 else []
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return chars[0] * len(values)
    last = len(chars) - 1
    return "".join(chars[min(last, int(v / top * last + 0.5))] for v in values)


def bar(used: int, capacity: int, width: int, unicode: bool = True) -> str:
    if width <= 0:
        return ""
    full, empty = ("█", "·") if unicode else ("#", ".")
    filled = 0 if capacity <= 0 else min(width, round(used / capacity * width))
    if used > 0 and filled == 0:
        filled = 1
    return full * filled + empty * (width - filled)


def natural_key(text: str) -> list:
    """worker-2 before worker-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


###############################################################################
# Model
# The last snapshot, the rate histories and what the user chose to see.
###############################################################################

class Model:
    """What the screen shows; no curses in here."""

    def __init__(self, sort: str = "msgs/s") -> None:
        self.snapshot: Snapshot | None = None          # the snapshot on screen
        self.latest: Snapshot | None = None            # the newest one (differs when paused)
        self.history: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self.actor_history: dict[str, collections.deque[float]] = {}
        self.sort = sort                               # one of SORTS
        self.filter = ""                               # substring of id or type
        self.grouped = False                           # one row per actor type
        self.selected: str | None = None               # id (or type when grouped) under the cursor
        self.cursor = 0                                # its index in rows()
        self.top = 0                                   # first row shown
        self.paused = False
        self.detail: str | None = None                 # the actor whose detail view is open
        self.connected = False
        self.path = ""
        self.status = ""                               # one line for the user, bottom row

    # -- feed ----------------------------------------------------------------

    def receive(self, line: dict[str, Any]) -> None:
        kind = line.get("type")
        if kind == "snapshot":
            self._snapshot(line)
        elif kind == "error":
            self.status = f"engine: {line.get('error', 'error')}"
        elif kind == "reply" and line.get("cmd") == "poison_pill":
            self.status = f"poison pill sent to {line.get('id')!r}"
        elif kind == "reply" and line.get("cmd") == "interval":
            self.status = f"interval now {line.get('seconds')} s"

    def _snapshot(self, snap: Snapshot) -> None:
        if snap.get("v") != FORMAT:
            self.status = (f"this engine speaks feed version {snap.get('v')!r}; this inspector "
                           f"reads version {FORMAT}: use the inspector_curses.py that came with "
                           f"its backstage.py")
            return
        old = self.latest
        if old is not None and old["engine"].get("pid") != snap["engine"].get("pid"):
            self.history.clear()           # another engine (a restart): new histories
            self.actor_history.clear()
        self.latest = snap
        self.history.append(snap["engine"].get("messages_per_s", 0.0))
        seen = set()
        for row in snap["actors"]:
            seen.add(row["id"])
            rates = self.actor_history.get(row["id"])
            if rates is None:
                rates = self.actor_history[row["id"]] = collections.deque(maxlen=ACTOR_HISTORY)
            rates.append(row["messages_per_s"])
        for gone in set(self.actor_history) - seen:
            if gone != self.detail:
                del self.actor_history[gone]
        if not self.paused:
            self.snapshot = snap

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.snapshot = self.latest

    # -- the table -----------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """The rows the table shows, filtered, grouped and sorted."""
        actors = self.snapshot["actors"] if self.snapshot else []
        if self.filter:
            needle = self.filter.lower()
            actors = [r for r in actors
                      if needle in r["id"].lower() or needle in r["type"].lower()]
        rows = group_by_type(actors) if self.grouped else actors
        if self.sort == "id":
            return sorted(rows, key=lambda r: natural_key(r["id"]))
        if self.sort == "inbox":
            return sorted(rows, key=lambda r: (-r["inbox"], natural_key(r["id"])))
        return sorted(rows, key=lambda r: (-r["messages_per_s"], natural_key(r["id"])))

    def row(self, actor_id: str) -> dict[str, Any] | None:
        for row in self.snapshot["actors"] if self.snapshot else ():
            if row["id"] == actor_id:
                return row
        return None

    def place_cursor(self, rows: list[dict[str, Any]], height: int) -> None:
        """Keep the cursor on the selected id, and on screen."""
        ids = [r["id"] for r in rows]
        if self.selected in ids:
            self.cursor = ids.index(self.selected)
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        self.selected = ids[self.cursor] if rows else None
        height = max(height, 1)
        if self.cursor < self.top:
            self.top = self.cursor
        elif self.cursor >= self.top + height:
            self.top = self.cursor - height + 1
        self.top = max(0, min(self.top, max(len(rows) - height, 0)))

    def move(self, delta: int) -> None:
        rows = self.rows()
        if rows:
            self.cursor = max(0, min(self.cursor + delta, len(rows) - 1))
            self.selected = rows[self.cursor]["id"]


def group_by_type(actors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per actor type, with the sums of its actors."""
    groups: dict[str, dict[str, Any]] = {}
    for row in actors:
        group = groups.get(row["type"])
        if group is None:
            group = groups[row["type"]] = {
                "id": row["type"], "type": row["type"], "actors": 0, "messages_per_s": 0.0,
                "inbox": 0, "capacity": 0, "messages_total": 0, "parent": None, "group": True}
        group["actors"] += 1
        group["messages_per_s"] += row["messages_per_s"]
        group["inbox"] += row["inbox"]
        group["capacity"] += row["capacity"]
        group["messages_total"] += row["messages_total"]
    return list(groups.values())


###############################################################################
# Drawing
# Painter clips and swallows curses errors; View lays out a frame from the model.
###############################################################################

class Theme:
    """Attributes for each kind of text; plain in tests, coloured under curses."""

    def __init__(self, header: int = 0, title: int = 0, selected: int = 0, dim: int = 0,
                 warn: int = 0, good: int = 0, unicode: bool = True) -> None:
        self.header = header
        self.title = title
        self.selected = selected
        self.dim = dim
        self.warn = warn
        self.good = good
        self.unicode = unicode
        self.sparks = SPARKS_UNICODE if unicode else SPARKS_ASCII

    @classmethod
    def from_curses(cls) -> Theme:
        unicode = locale.getpreferredencoding(False).lower().replace("-", "") == "utf8"
        theme = cls(header=curses.A_REVERSE, title=curses.A_BOLD,
                    selected=curses.A_REVERSE | curses.A_BOLD, dim=curses.A_DIM,
                    warn=curses.A_BOLD, good=curses.A_BOLD, unicode=unicode)
        try:
            if curses.has_colors():
                curses.start_color()
                curses.use_default_colors()
                curses.init_pair(1, curses.COLOR_BLACK, curses.COLOR_CYAN)
                curses.init_pair(2, curses.COLOR_YELLOW, -1)
                curses.init_pair(3, curses.COLOR_GREEN, -1)
                theme.header = curses.color_pair(1)
                theme.warn = curses.color_pair(2) | curses.A_BOLD
                theme.good = curses.color_pair(3)
        except curses.error:
            pass
        return theme


class Painter:
    """Writes text clipped to the window; a curses error never escapes a frame."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self.height, self.width = window.getmaxyx()

    def text(self, y: int, x: int, text: str, attr: int = 0) -> None:
        if not (0 <= y < self.height and 0 <= x < self.width):
            return
        try:
            self.window.addnstr(y, x, text, self.width - x, attr)
        except curses.error:
            pass    # the bottom-right cell, or a size that changed under us

    def line(self, y: int, text: str, attr: int = 0) -> None:
        """A whole row, padded so a coloured row spans the width."""
        self.text(y, 0, text.ljust(self.width)[:self.width], attr)


class Column:
    def __init__(self, title: str, width: int, cell: Callable[[dict, Theme], str],
                 right: bool = False, min_screen: int = 0) -> None:
        self.title = title
        self.width = width
        self.cell = cell
        self.right = right
        self.min_screen = min_screen   # dropped on screens narrower than this

    def fit(self, text: str, width: int) -> str:
        text = text[:width]
        return text.rjust(width) if self.right else text.ljust(width)


def _inbox_cell(row: dict, theme: Theme) -> str:
    gauge = bar(row["inbox"], row["capacity"], 6, theme.unicode)
    return f"{gauge} {row['inbox']}/{row['capacity']}"


ACTOR_COLUMNS = [
    Column("TYPE", 16, lambda r, t: r["type"], min_screen=44),
    Column("MSGS/S", 9, lambda r, t: fmt_rate(r["messages_per_s"]), right=True),
    Column("INBOX", 20, _inbox_cell, min_screen=56),
    Column("TOTAL", 13, lambda r, t: fmt_count(r["messages_total"]), right=True,
           min_screen=72),
    Column("PARENT", 18, lambda r, t: r["parent"] or "-", min_screen=96),
]
GROUP_COLUMNS = [
    Column("ACTORS", 7, lambda r, t: str(r["actors"]), right=True),
    Column("MSGS/S", 9, lambda r, t: fmt_rate(r["messages_per_s"]), right=True),
    Column("INBOX", 10, lambda r, t: fmt_count(r["inbox"]), right=True, min_screen=40),
    Column("TOTAL", 13, lambda r, t: fmt_count(r["messages_total"]), right=True,
           min_screen=60),
]
HELP = "s sort  / filter  g group  \u23ce detail  k stop  p pause  q quit"
HELP_ASCII = "s sort  / filter  g group  Enter detail  k stop  p pause  q quit"


class View:
    """Draws one frame of the model; reads the window size every frame."""

    MIN_WIDTH, MIN_HEIGHT = 20, 4

    def __init__(self, theme: Theme) -> None:
        self.theme = theme

    def table_height(self, height: int) -> int:
        return max(height - 5, 1)      # header 2, settings 1, column titles 1, bottom 1

    def draw(self, window: Any, app: App) -> None:
        paint = Painter(window)
        model = app.model
        if paint.width < self.MIN_WIDTH or paint.height < self.MIN_HEIGHT:
            paint.text(0, 0, "terminal too small"[:paint.width])
            paint.text(1, 0, "q quits"[:paint.width])
            return
        self.draw_header(paint, model)
        if model.detail is not None:
            self.draw_detail(paint, model)
        else:
            self.draw_table(paint, model)
        self.draw_bottom(paint, app)

    # -- parts ---------------------------------------------------------------

    def draw_header(self, paint: Painter, model: Model) -> None:
        theme = self.theme
        snap = model.snapshot
        if snap is None:
            title = "backstage inspector"
            if not model.connected:
                title += f"  disconnected from {model.path}; retrying every {RECONNECT_EVERY:g} s"
            else:
                title += f"  connected to {model.path}; waiting for the first snapshot"
            paint.line(0, " " + title, theme.header)
            return
        eng = snap["engine"]
        state = "" if model.connected else "  DISCONNECTED, retrying"
        state += "  PAUSED" if model.paused else ""
        paint.line(0, f" {eng['program']}  pid {eng['pid']}  {eng['backend']}  "
                      f"up {fmt_duration(eng['uptime'])}  actors {eng['actors']}  "
                      f"dead letters {fmt_count(eng['dead_letters'])}{state}", theme.header)
        rate = (f" msgs/s {fmt_rate(eng['messages_per_s'])} "
                f"(avg {fmt_rate(eng['messages_per_s_avg'])})  ")
        tail = f"  total {fmt_count(eng['messages_total'])}"
        room = paint.width - len(rate) - len(tail) - 1
        spark = sparkline(model.history, min(room, HISTORY), theme.sparks)
        paint.text(1, 0, rate, theme.title)
        paint.text(1, len(rate), spark, theme.good)
        paint.text(1, len(rate) + len(spark), tail)

    def columns(self, model: Model, width: int) -> list[Column]:
        columns = GROUP_COLUMNS if model.grouped else ACTOR_COLUMNS
        return [c for c in columns if width >= c.min_screen]

    def draw_table(self, paint: Painter, model: Model) -> None:
        theme = self.theme
        rows = model.rows()
        height = self.table_height(paint.height)
        model.place_cursor(rows, height)
        settings = f" sort: {model.sort}"
        if model.filter:
            settings += f"   filter: {model.filter}"
        if model.grouped:
            settings += "   grouped by type"
        total = len(model.snapshot["actors"]) if model.snapshot else 0
        settings += f"   {len(rows)} of {total} shown" if model.filter else ""
        paint.text(2, 0, settings, theme.dim)

        columns = self.columns(model, paint.width)
        fixed = sum(c.width + 1 for c in columns)
        id_width = max(paint.width - fixed - 1, 8)
        first = "TYPE" if model.grouped else "ID"
        header = " " + first.ljust(id_width) + "".join(
            " " + c.fit(c.title, c.width) for c in columns)
        paint.line(3, header, theme.title | theme.header)
        if not rows:
            paint.text(4, 1, "no actor matches the filter" if model.filter else "no actors",
                       theme.dim)
        for i, row in enumerate(rows[model.top:model.top + height]):
            text = " " + _clip(row["id"], id_width).ljust(id_width) + "".join(
                " " + c.fit(c.cell(row, theme), c.width) for c in columns)
            attr = theme.selected if model.top + i == model.cursor else 0
            if not attr and row.get("state", "running") != "running":
                attr = theme.dim
            paint.line(4 + i, text, attr)

    def draw_detail(self, paint: Painter, model: Model) -> None:
        theme = self.theme
        actor_id = model.detail
        row = model.row(actor_id)
        paint.line(2, f" actor {actor_id}" + ("" if row else "  (stopped)"), theme.title)
        if row is None:
            paint.text(4, 1, "this actor is no longer in the engine's registry", theme.warn)
            paint.text(5, 1, "Esc or Enter goes back to the table", theme.dim)
            return
        snap = model.snapshot
        children = [r["id"] for r in snap["actors"] if r["parent"] == actor_id]
        subs = ", ".join(f"{pub}:{topic}" for pub, topic in row["subscriptions"]) or "-"
        last = row["last_message_at"]
        age = f"{max(snap['time'] - last, 0):.1f} s ago" if last is not None else "never"
        lines = [
            ("type", row["type"]),
            ("state", row["state"]),
            ("parent", row["parent"] or "- (top level)"),
            ("children", ", ".join(children) or "-"),
            ("subscriptions", subs),
            ("subscribers", str(row["subscribers"])),
            ("inbox", f"{row['inbox']} / {row['capacity']}  "
                      f"{bar(row['inbox'], row['capacity'], 20, theme.unicode)}"),
            ("messages", f"{fmt_count(row['messages_total'])} total, "
                         f"{fmt_rate(row['messages_per_s'])}/s now"),
            ("last message", age),
        ]
        y = 3
        for label, value in lines:
            paint.text(y, 1, f"{label:<14}", theme.dim)
            paint.text(y, 16, value)
            y += 1
        history = list(model.actor_history.get(actor_id, ()))
        if y + 2 < paint.height:
            top = max(history) if history else 0.0
            paint.text(y + 1, 1, f"msgs/s, last {len(history)} snapshots (max {fmt_rate(top)})",
                       theme.dim)
            paint.text(y + 2, 1, sparkline(history, paint.width - 2, theme.sparks), theme.good)

    def draw_bottom(self, paint: Painter, app: App) -> None:
        model = app.model
        y = paint.height - 1
        if app.mode == "filter":
            paint.line(y, f" filter: {app.edit}_   (Enter keeps it, Esc cancels)", self.theme.title)
        elif app.mode == "confirm":
            paint.line(y, f" stop actor {app.confirm_id!r} with a poison pill? (y/n)",
                       self.theme.warn | curses.A_REVERSE)
        elif model.status:
            paint.line(y, " " + model.status, self.theme.warn)
        elif model.detail is not None:
            paint.line(y, " Esc back  k stop  p pause  q quit", self.theme.dim)
        else:
            paint.line(y, " " + (HELP if self.theme.unicode else HELP_ASCII), self.theme.dim)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "~"


###############################################################################
# Input
# App owns the model, the feed and the mode; press() maps one key per mode.
###############################################################################

ESC = 27
ENTER_KEYS = (10, 13, curses.KEY_ENTER)
BACKSPACE_KEYS = (8, 127, curses.KEY_BACKSPACE)


class App:
    """The inspector's state machine: modes table, filter, confirm (and detail)."""

    def __init__(self, model: Model, connection: Any, view: View) -> None:
        self.model = model
        self.connection = connection
        self.view = view
        self.mode = "table"             # "table", "filter" (typing) or "confirm" (y/n)
        self.edit = ""                  # the filter being typed
        self.filter_before = ""         # the filter when typing began
        self.confirm_id: str | None = None
        self.next_attempt = 0.0         # monotonic time of the next reconnection
        self.page = 10                  # rows per PgUp/PgDn, set from the screen height
        self.keys: dict[int, Callable[[], bool | None]] = {
            ord("q"): self.quit, ord("Q"): self.quit,
            ord("s"): self.cycle_sort, ord("/"): self.start_filter, ord("g"): self.toggle_group,
            ord("p"): self.toggle_pause, ord("k"): self.ask_kill,
            curses.KEY_UP: lambda: self.model.move(-1),
            curses.KEY_DOWN: lambda: self.model.move(1),
            curses.KEY_PPAGE: lambda: self.model.move(-self.page),
            curses.KEY_NPAGE: lambda: self.model.move(self.page),
            curses.KEY_HOME: lambda: self.model.move(-10**9),
            curses.KEY_END: lambda: self.model.move(10**9),
            curses.KEY_LEFT: self.back, ESC: self.back,
            **{key: self.enter for key in ENTER_KEYS},
            **{key: self.back for key in BACKSPACE_KEYS},
        }

    # -- the feed ------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Read what the feed sent; reconnect once a second while disconnected."""
        conn = self.connection
        if not conn.connected and now >= self.next_attempt:
            self.next_attempt = now + RECONNECT_EVERY
            if conn.connect():
                self.model.status = ""
        for line in conn.poll():
            self.model.receive(line)
        self.model.connected = conn.connected
        self.model.path = conn.path

    # -- keys ----------------------------------------------------------------

    def press(self, key: int) -> bool:
        """Handle one key; False means quit."""
        if self.mode == "filter":
            self.filter_key(key)
            return True
        if self.mode == "confirm":
            self.confirm_key(key)
            return True
        self.model.status = ""
        action = self.keys.get(key)
        return action() is not False if action is not None else True

    def quit(self) -> bool:
        return False

    def cycle_sort(self) -> None:
        self.model.sort = SORTS[(SORTS.index(self.model.sort) + 1) % len(SORTS)]

    def start_filter(self) -> None:
        # The edit starts from the current filter; Esc puts that one back.
        self.mode, self.edit, self.filter_before = "filter", self.model.filter, self.model.filter

    def filter_key(self, key: int) -> None:
        if key in ENTER_KEYS:
            self.mode = "table"
        elif key == ESC:
            self.mode = "table"
            self.model.filter = self.filter_before
            return
        elif key in BACKSPACE_KEYS:
            self.edit = self.edit[:-1]
        elif 32 <= key < 127:
            self.edit += chr(key)
        else:
            return
        self.model.filter = self.edit      # the table follows as the user types

    def toggle_group(self) -> None:
        self.model.grouped = not self.model.grouped
        self.model.selected, self.model.cursor, self.model.top = None, 0, 0
        self.model.detail = None

    def toggle_pause(self) -> None:
        self.model.toggle_pause()

    def enter(self) -> None:
        model = self.model
        if model.detail is not None:
            model.detail = None
        elif model.grouped and model.selected is not None:
            # Enter on a type: show its actors.
            model.filter, model.grouped = model.selected, False
            model.selected, model.cursor, model.top = None, 0, 0
        elif model.selected is not None:
            model.detail = model.selected

    def back(self) -> None:
        self.model.detail = None

    def ask_kill(self) -> None:
        model = self.model
        target = model.detail or (None if model.grouped else model.selected)
        if target is None:
            model.status = "select an actor first (in the table, not grouped)"
        elif not self.connection.connected:
            model.status = "not connected: cannot stop an actor now"
        else:
            self.mode, self.confirm_id = "confirm", target

    def confirm_key(self, key: int) -> None:
        self.mode = "table"
        if key in (ord("y"), ord("Y")):
            if self.connection.send({"cmd": "poison_pill", "id": self.confirm_id}):
                self.model.status = f"stopping {self.confirm_id!r}..."
            else:
                self.model.status = "not connected: the actor was not stopped"
        else:
            self.model.status = "not stopped"
        self.confirm_id = None


###############################################################################
# Screens: the main loop and the built-in picker
###############################################################################

def run_inspector(stdscr: Any, connection: Connection, sort: str) -> None:
    """The curses main loop: each frame is erase(); draw(); refresh()."""
    _setup_screen(stdscr)
    view = View(Theme.from_curses())
    app = App(Model(sort=sort), connection, view)
    while True:
        app.tick(time.monotonic())
        app.page = max(view.table_height(stdscr.getmaxyx()[0]) - 1, 1)
        stdscr.erase()
        view.draw(stdscr, app)
        stdscr.refresh()
        key = stdscr.getch()
        if key == curses.KEY_RESIZE:
            # The one place a resize is handled: every frame reads the size again.
            curses.update_lines_cols()
            continue
        if key != -1 and not app.press(key):
            return


class Picker:
    """The built-in engine picker: a list, arrows, Enter, q."""

    def __init__(self, engines: list[EngineSocket]) -> None:
        self.engines = engines
        self.cursor = 0

    def press(self, key: int) -> EngineSocket | bool | None:
        """The chosen engine, False to quit, None to go on."""
        if key == curses.KEY_UP:
            self.cursor = max(self.cursor - 1, 0)
        elif key == curses.KEY_DOWN:
            self.cursor = min(self.cursor + 1, len(self.engines) - 1)
        elif key in ENTER_KEYS:
            return self.engines[self.cursor]
        elif key in (ord("q"), ESC):
            return False
        return None

    def draw(self, window: Any, theme: Theme) -> None:
        paint = Painter(window)
        paint.line(0, " backstage inspector: several engines are running; pick one",
                   theme.header)
        for i, engine in enumerate(self.engines[:max(paint.height - 3, 0)]):
            paint.line(2 + i, "  " + engine.label(),
                       theme.selected if i == self.cursor else 0)
        paint.line(paint.height - 1, " arrows move  Enter opens  q quits", theme.dim)


def run_picker(stdscr: Any, engines: list[EngineSocket]) -> EngineSocket | None:
    _setup_screen(stdscr)
    theme = Theme.from_curses()
    picker = Picker(engines)
    while True:
        stdscr.erase()
        picker.draw(stdscr, theme)
        stdscr.refresh()
        key = stdscr.getch()
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            continue
        choice = picker.press(key) if key != -1 else None
        if choice is False:
            return None
        if choice is not None:
            return choice


def pick_with_curses_menu(engines: list[EngineSocket]) -> EngineSocket | None | bool:
    """curses-menu's picker; True when curses-menu is not installed."""
    try:
        import cursesmenu
    except ImportError:
        return True
    menu = getattr(cursesmenu, "CursesMenu", None)
    get_selection = getattr(menu, "get_selection", None) or getattr(
        getattr(cursesmenu, "SelectionMenu", None), "get_selection", None)
    if get_selection is None:
        return True
    index = get_selection([e.label() for e in engines], "backstage inspector",
                          "several engines are running; pick one")
    return engines[index] if isinstance(index, int) and 0 <= index < len(engines) else None


def _setup_screen(stdscr: Any) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        pass
    stdscr.timeout(FRAME_MS)
    stdscr.keypad(True)


###############################################################################
# --once: one snapshot as plain text
###############################################################################

def format_once(snap: Snapshot, sort: str = "msgs/s") -> str:
    model = Model(sort=sort)
    model.receive(snap)
    eng = snap["engine"]
    out = [f"{eng['program']}  pid {eng['pid']}  backend {eng['backend']}  "
           f"up {fmt_duration(eng['uptime'])}  actors {eng['actors']}  "
           f"msgs/s {fmt_rate(eng['messages_per_s_avg'])}  "
           f"total {fmt_count(eng['messages_total'])}  "
           f"dead letters {fmt_count(eng['dead_letters'])}"]
    rows = model.rows()
    width = max([len("ID")] + [len(r["id"]) for r in rows])
    out.append(f"{'ID':<{width}}  {'TYPE':<16} {'MSGS/S':>9} {'INBOX':>12} "
               f"{'TOTAL':>13}  PARENT")
    for r in rows:
        out.append(f"{r['id']:<{width}}  {r['type'][:16]:<16} "
                   f"{fmt_rate(r['messages_per_s']):>9} "
                   f"{str(r['inbox']) + '/' + str(r['capacity']):>12} "
                   f"{fmt_count(r['messages_total']):>13}  {r['parent'] or '-'}")
    return "\n".join(out)


###############################################################################
# main
###############################################################################

class UserError(Exception):
    """Something the user can fix; main() prints it without a traceback."""


def choose_socket(args: argparse.Namespace) -> tuple[str, str | None, list[EngineSocket]]:
    """The socket to open, the program name to follow, and the engines when several."""
    if args.socket:
        path = os.path.abspath(args.socket)
        if not os.path.exists(path):
            raise UserError(f"no socket at {path}: is the engine running with "
                            f"Engine(inspector={args.socket!r})? Or leave the path out to "
                            f"find running engines")
        return path, None, []
    engines = find_engines()
    if not engines:
        raise UserError(f"no running engine found in {' or '.join(socket_dirs())}: {START_ONE}")
    if len(engines) == 1:
        return engines[0].path, engines[0].program, []
    return "", None, engines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector_curses.py",
        description="Live view of a running backstage engine (Engine(inspector=True)).")
    parser.add_argument("socket", nargs="?", help="the engine's socket; found when left out")
    parser.add_argument("--once", action="store_true",
                        help="print one snapshot as plain text and exit")
    parser.add_argument("--sort", choices=SORTS, default="msgs/s", help="the first sort order")
    args = parser.parse_args(argv)
    try:
        path, program, several = choose_socket(args)
        if args.once:
            if several:
                raise UserError("several engines are running; pass one socket:\n  " +
                                "\n  ".join(e.path for e in several))
            try:
                print(format_once(read_one_snapshot(path), args.sort))
            except OSError as exc:
                raise UserError(f"cannot read the feed at {path}: {exc}; is the engine "
                                f"still running?") from None
            return 0
        locale.setlocale(locale.LC_ALL, "")
        os.environ.setdefault("ESCDELAY", "25")      # Esc answers at once
        if several:
            chosen = pick_with_curses_menu(several)
            if chosen is True:
                chosen = curses.wrapper(run_picker, several)
            if chosen is None:
                return 0
            path, program = chosen.path, chosen.program
        connection = Connection(path, program)
        if not connection.connect():
            raise UserError(f"cannot connect to {path}: the engine has exited or does not "
                            f"serve this socket; {START_ONE}")
        curses.wrapper(run_inspector, connection, args.sort)
        return 0
    except KeyboardInterrupt:
        return 0
    except UserError as exc:
        print(f"inspector: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:   # never a traceback for the user
        print(f"inspector: unexpected {type(exc).__name__}: {exc}; run with PYTHONDEVMODE=1 "
              f"to see where, and please report it", file=sys.stderr)
        if os.environ.get("PYTHONDEVMODE"):
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
