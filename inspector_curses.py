#!/usr/bin/env python3
"""inspector_curses: a live terminal view of a running backstage engine.

    python inspector_curses.py [SOCKET]      # attach; with no SOCKET, find running engines
    python inspector_curses.py --once        # print one snapshot as plain text and exit

The engine must run with ``Engine(inspector=True)`` (or a socket path); it
then writes a JSON snapshot per interval on a Unix socket (see
docs/inspector.md).  Press ``?`` in the inspector for every key: sort by any
column (``s``/``S``, ``r`` reverses), filter (``/``), group by type (``g``),
the dead letters (``d``), the supervision tree (``t``), an actor's detail
(Enter), stop it (``k``), pause (``p``), quit (``q``).

Standard library only; with curses-menu installed (``pip install
curses-menu``) the engine picker is a curses-menu menu.  The program is three
parts kept apart, as in ranger and glances: the model (``Model``: the
snapshots and what the user chose), the drawing (``View``, through
``Painter``, which never lets a curses error out and never shows a control
character; drawing reads the model and changes nothing), and the input
(``App.press``, one key table).  The main view and the picker run in the same
frame loop (``run_frames``), which lays out every frame for the terminal's
real size.

What it trusts: with no SOCKET it only looks in directories owned by this user
and writable by nobody else, and it only talks to a process of this user's id
(``SO_PEERCRED``, on Linux).  A feed line over ``--max-line-mb`` is dropped
with the connection (it reconnects).  Everything the engine sends is checked
for type before use, and fields an older engine does not send show as ``-``.
"""

from __future__ import annotations

import argparse
import collections
import curses
import glob
import json
import locale
import math
import os
import re
import socket
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

FORMAT = 1                      # the feed version this inspector reads
RECONNECT_EVERY = 1.0           # seconds between two reconnection attempts
FRAME_MS = 100                  # input poll timeout, and so the frame period
HISTORY = 120                   # samples of the total rate kept for the sparkline
ACTOR_HISTORY = 60              # samples of each actor's rate kept for the detail view
# No snapshot for this many intervals (and at least STUCK_MIN_S): the banner says so.
STUCK_INTERVALS = 3
STUCK_MIN_S = 2.0
# A feed line longer than this is dropped with the connection.  A snapshot row
# is about 450 bytes, so 64 MiB holds some 150,000 actors.
MAX_LINE = 64 << 20
ID_SHARE = 0.45                 # the most of the width the id column takes
ID_MIN = 10                     # the least, when it needs that much
# PROGRAM-PID.sock, or PROGRAM-PID.N.sock for the Nth engine of a process.
_SOCKET_NAME = re.compile(r"^(?P<program>.+)-(?P<pid>\d+)(?:\.\d+)?\.sock$")

# What to do when no engine is found; said by --once, the picker and main().
START_ONE = ("start a program with backstage.Engine(inspector=True) (try `make demo`), "
             "or pass the socket path as the argument: /path/to/engine.sock")

Snapshot = dict[str, Any]
Row = dict[str, Any]


###############################################################################
# Safe text
# Everything shown passes through safe(): no control character reaches the terminal.
###############################################################################

# C0, DEL, C1, and the format characters that reorder or hide text (bidi
# overrides, zero-width joiners), and lone surrogates, which curses cannot encode.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                     "\ufeff\ud800-\udfff]")


def safe(text: str) -> str:
    """``text`` with every control, format or lone surrogate character as ``?``."""
    return _UNSAFE.sub("?", text)


def elide(text: str, width: int, ellipsis: str = "\u2026", head: int | None = None) -> str:
    """``text`` in at most ``width`` cells, its middle elided: ids differ at their ends."""
    if len(text) <= width:
        return text
    if width <= len(ellipsis):
        return text[:width]
    room = width - len(ellipsis)
    head = room // 2 if head is None else max(0, min(head, room))
    return text[:head] + ellipsis + text[len(text) - (room - head):]


def elide_unique(texts: Sequence[str], width: int, ellipsis: str = "\u2026") -> list[str]:
    """Each text elided to ``width``, distinct texts kept distinct where the width allows.

    The middle goes first; when that makes two ids look alike, the split moves
    until they differ, and failing that the window shows where they differ.
    """
    out = [elide(t, width, ellipsis) for t in texts]
    groups: dict[str, list[int]] = {}
    for i, shown in enumerate(out):
        groups.setdefault(shown, []).append(i)
    for members in groups.values():
        originals = {texts[i] for i in members}
        if len(originals) < 2:
            continue
        room = width - len(ellipsis)
        for head in range(room, -1, -1):
            tries = {texts[i]: elide(texts[i], width, ellipsis, head) for i in members}
            if len(set(tries.values())) == len(originals):
                for i in members:
                    out[i] = tries[texts[i]]
                break
        else:
            for i in members:
                out[i] = _window_at_difference(texts[i], [texts[j] for j in members],
                                               width, ellipsis)
    return out


def _window_at_difference(text: str, others: list[str], width: int, ellipsis: str) -> str:
    """The part of ``text`` around where it first differs from the others."""
    first = min((_common_prefix(text, o) for o in others if o != text), default=0)
    start = max(0, first - (width - 2 * len(ellipsis)) // 2)
    body = text[start:start + width - 2 * len(ellipsis)]
    return (ellipsis if start else "") + body + ellipsis


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


###############################################################################
# Finding engines
# Live sockets in private per-user directories, served by this user's processes.
###############################################################################

def socket_dirs() -> list[str]:
    """Where engines put their sockets: the same rule as backstage.inspector_dir().

    ``$XDG_RUNTIME_DIR/backstage``, ``<tmp>/backstage-<uid>``, and the fresh
    private directories (``<tmp>/backstage-<uid>-*``) an engine falls back to
    when the usual one belongs to someone else.
    """
    dirs = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        dirs.append(os.path.join(runtime, "backstage"))
    base = os.path.join(tempfile.gettempdir(), f"backstage-{os.getuid()}")
    dirs.append(base)
    dirs += sorted(glob.glob(glob.escape(base) + "-*"))
    return dirs


def check_dir(path: str) -> str | None:
    """Why the socket directory ``path`` is not to be trusted, or None when it is.

    It must be a real directory (not a symlink) owned by this user, which no
    other user may write to: anyone else could plant a socket there.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return None if not os.path.lexists(path) else f"{path} cannot be read"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.getuid():
        return f"{path} belongs to user id {info.st_uid}, not to you ({os.getuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}): "
                f"make it private with chmod 700")
    return None


def peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process serving ``sock``, where the OS tells (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def check_peer(sock: socket.socket, path: str) -> str | None:
    """Why the process at the other end is not to be trusted, or None."""
    try:
        uid = peer_uid(sock)
    except OSError as exc:
        return f"cannot tell who serves {path}: {exc}"
    if uid is not None and uid != os.getuid():
        return (f"{path} is served by a process of user id {uid}, not yours ({os.getuid()}); "
                f"the inspector only talks to your own engines")
    return None


def open_feed(path: str, timeout: float = 1.0) -> socket.socket:
    """A connected socket to ``path`` whose server runs as this user; OSError otherwise."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        problem = check_peer(sock, path)
        if problem is not None:
            raise PermissionError(problem)
    except BaseException:
        sock.close()
        raise
    return sock


class EngineSocket:
    """A socket found on disk: its path, and the program and pid its name tells."""

    def __init__(self, path: str) -> None:
        self.path = path
        match = _SOCKET_NAME.match(os.path.basename(path))
        self.program = match["program"] if match else os.path.basename(path)
        self.pid = int(match["pid"]) if match else None
        self.cluster: dict[str, Any] | None = None    # its feed's cluster fields, once probed

    def label(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "pid ?"
        return f"{self.program:<24} {pid:<12} {self.path}"


class ClusterEntry:
    """The engines of one backstage.Cluster found on this machine, by engine number."""

    def __init__(self, name: str, engines: list[EngineSocket]) -> None:
        self.name = name
        self.engines = sorted(engines, key=lambda e: (e.cluster or {}).get("engine", 0))
        self.size = max((e.cluster or {}).get("engines", 0) for e in engines)

    def label(self) -> str:
        here = f"{len(self.engines)} of {self.size} engines"
        return f"cluster {self.name:<16} {here:<16} {os.path.dirname(self.engines[0].path)}"


def probe_clusters(engines: list[EngineSocket], timeout: float = 2.0) -> None:
    """Read one snapshot of each engine: the cluster it says it is part of, if any."""
    for engine in engines:
        try:
            engine.cluster = clean_snapshot(read_one_snapshot(engine.path, timeout))[
                "engine"]["cluster"]
        except (OSError, ValueError):
            engine.cluster = None


def group_clusters(engines: list[EngineSocket]) -> list[EngineSocket | ClusterEntry]:
    """The engines, those of one cluster as one entry (in the place of its newest)."""
    order: list[EngineSocket | str] = []
    members: dict[str, list[EngineSocket]] = {}
    for engine in engines:
        if engine.cluster is None:
            order.append(engine)
            continue
        name = engine.cluster["name"]
        if name not in members:
            members[name] = []
            order.append(name)
        members[name].append(engine)
    return [ClusterEntry(e, members[e]) if isinstance(e, str) else e for e in order]


def find_engines(dirs: Iterable[str] | None = None,
                 problems: list[str] | None = None) -> list[EngineSocket]:
    """Live engine sockets of this user, newest first.

    Stale files are skipped; so are directories and servers that are not this
    user's own, with the reason appended to ``problems``.
    """
    found = []
    for directory in dirs if dirs is not None else socket_dirs():
        problem = check_dir(directory)
        if problem is not None:
            if problems is not None:
                problems.append(problem)
            continue
        for path in glob.glob(os.path.join(glob.escape(directory), "*.sock")):
            try:
                open_feed(path).close()
            except PermissionError as exc:
                if problems is not None:
                    problems.append(str(exc))
                continue
            except OSError:
                continue
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
# Non-blocking reads of bounded JSON lines, commands out, reconnection.
###############################################################################

def decode_line(raw: bytes) -> dict[str, Any] | None:
    """One feed line as a dict, or None when it is not a JSON object."""
    try:
        obj = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class Connection:
    """One engine's feed.  ``poll()`` returns the lines that arrived, never blocks."""

    READ_BUDGET = 4 * MAX_LINE      # bytes one poll() reads at most, so a frame is drawn

    def __init__(self, path: str, program: str | None = None,
                 max_line: int = MAX_LINE) -> None:
        self.path = path
        self.program = program          # to find the engine again after a restart
        self.max_line = max_line
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.problem = ""               # why the last connection ended or was refused

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self) -> bool:
        for path in self._candidates():
            try:
                sock = open_feed(path)
            except PermissionError as exc:
                self.problem = str(exc)
                continue
            except OSError:
                continue
            sock.setblocking(False)
            self.sock, self.path = sock, path
            self.buffer.clear()
            self.problem = ""
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
        lines: list[dict[str, Any]] = []
        budget = self.READ_BUDGET
        while budget > 0:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                break
            budget -= len(data)
            start = len(self.buffer)
            self.buffer += data
            if self.buffer.find(b"\n", start) < 0:
                if len(self.buffer) > self.max_line:
                    self.problem = (f"the engine sent a line of over {self.max_line >> 20} MiB; "
                                    f"dropped it and reconnected (--max-line-mb raises "
                                    f"the bound)")
                    self.close()
                    break
                continue
            lines += self._split()
        return lines

    def _split(self) -> list[dict[str, Any]]:
        lines = []
        end = self.buffer.rfind(b"\n")
        chunk = bytes(self.buffer[:end])
        del self.buffer[:end + 1]
        for raw in chunk.split(b"\n"):
            obj = decode_line(raw)
            if obj is not None:
                lines.append(obj)
        return lines

    def send(self, command: dict[str, Any]) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(1.0)
            self.sock.sendall(json.dumps(command).encode() + b"\n")
            self.sock.setblocking(False)
            return True
        except OSError:
            self.close()
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer = bytearray()


def read_one_snapshot(path: str, timeout: float = 5.0, max_line: int = MAX_LINE) -> Snapshot:
    """Connect, and return the first snapshot the engine sends (it sends one at once)."""
    with open_feed(path, timeout) as sock, sock.makefile("rb") as lines:
        while True:
            raw = lines.readline(max_line + 1)
            if not raw:
                break
            if len(raw) > max_line and not raw.endswith(b"\n"):
                raise ConnectionError(f"the engine at {path} sent a line of over "
                                      f"{max_line >> 20} MiB; --max-line-mb raises the bound")
            obj = decode_line(raw)
            if obj is not None and obj.get("type") == "snapshot":
                return obj
    raise ConnectionError(f"the engine at {path} closed the feed before any snapshot")


###############################################################################
# Reading the feed
# Snapshots checked field by field; absent fields (older engines) become None.
###############################################################################

def _int(value: Any) -> int | None:
    return int(value) if type(value) is int else (
        int(value) if isinstance(value, float) and math.isfinite(value) else None)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# Per-actor fields: name -> (reader, default).  The default None shows as "-".
_ROW_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "type": (_str, "?"), "parent": (_str, None), "state": (_str, "running"),
    "inbox": (_int, 0), "capacity": (_int, 0), "overflow": (_str, None),
    "messages_total": (_int, 0), "messages_per_s": (_float, 0.0),
    "last_message_at": (_float, None), "subscribers": (_int, 0),
    "restarts": (_int, None), "failures": (_int, None), "dead_letters": (_int, None),
    "receive_s": (_float, None), "receive_ms_per_s": (_float, None),
    "busy_share": (_float, None), "inbox_hwm": (_int, None), "strategy": (_str, None),
}
_ENGINE_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "pid": (_int, None), "program": (_str, "?"), "backend": (_str, "?"),
    "started_at": (_float, None), "uptime": (_float, 0.0), "actors": (_int, 0),
    "messages_total": (_int, 0), "messages_per_s": (_float, 0.0),
    "messages_per_s_avg": (_float, 0.0), "dead_letters": (_int, 0), "restarts": (_int, None),
    "clients": (_int, None), "failures": (_int, None), "receive_s": (_float, None),
    "busy_share": (_float, None), "waiting": (_int, None),
}


def clean_row(raw: Any) -> Row | None:
    """One actor row with every known field of its type, or None without an id."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    row: Row = {"id": raw["id"]}
    for name, (read, default) in _ROW_FIELDS.items():
        value = read(raw.get(name))
        row[name] = default if value is None else value
    subs = raw.get("subscriptions")
    row["subscriptions"] = [(str(s[0]), str(s[1])) for s in subs
                            if isinstance(s, list) and len(s) == 2] if isinstance(subs, list) \
        else []
    waits = raw.get("waiting_on")
    row["waits"] = [w for w in waits if isinstance(w, dict)] if isinstance(waits, list) else []
    # None while it waits on nothing (or the engine does not say): the column
    # shows while some actor waits, as the strategy column while one has a strategy
    row["waiting_on"] = ", ".join(map(fmt_wait, row["waits"])) or None
    return row


def fmt_wait(wait: dict[str, Any]) -> str:
    """One cause of a parked actor, short: "room:sink(2)", "link:far", "await"."""
    on, target = _str(wait.get("on")) or "?", _str(wait.get("id"))
    if target is None:
        return on
    count = _int(wait.get("messages"))
    return f"{on}:{target}" + (f"({count})" if count is not None else "")


def describe_wait(wait: dict[str, Any]) -> str:
    """One cause of a parked actor, in words, for the detail view."""
    on, target = _str(wait.get("on")), _str(wait.get("id"))
    if on == "room":
        count = _int(wait.get("messages"))
        return (f"room in {target}'s full inbox for {count if count is not None else 'its'} "
                f"send{'' if count == 1 else 's'}")
    if on == "link":
        return f"its link to {target}'s engine, which holds more than it may send soon"
    if on == "await":
        return "its async receive, which awaits"
    return fmt_wait(wait)


def clean_snapshot(raw: dict[str, Any]) -> Snapshot:
    """A snapshot line with checked fields: what the rest of the program reads."""
    engine_raw = raw.get("engine") if isinstance(raw.get("engine"), dict) else {}
    assert isinstance(engine_raw, dict)
    engine: dict[str, Any] = {}
    for name, (read, default) in _ENGINE_FIELDS.items():
        value = read(engine_raw.get(name))
        engine[name] = default if value is None else value
    engine["cluster"] = _clean_cluster(engine_raw.get("cluster"))
    engine["dead_letters_by_reason"] = _counts(engine_raw.get("dead_letters_by_reason"))
    engine["dead_letters_by_target"] = _counts(engine_raw.get("dead_letters_by_target"))
    recent = engine_raw.get("dead_letters_recent")
    engine["dead_letters_recent"] = (
        [d for d in map(_clean_dead_letter, recent) if d is not None]
        if isinstance(recent, list) else None)
    actors = raw.get("actors")
    rows = [r for r in map(clean_row, actors) if r is not None] if isinstance(actors, list) \
        else []
    return {"v": raw.get("v"), "type": "snapshot", "seq": _int(raw.get("seq")) or 0,
            "time": _float(raw.get("time")) or 0.0,
            "interval": _float(raw.get("interval")) or 0.5, "engine": engine, "actors": rows}


def _clean_cluster(raw: Any) -> dict[str, Any] | None:
    """The cluster an engine is part of: name, engine number, engines, sent to others."""
    if not isinstance(raw, dict) or _str(raw.get("name")) is None:
        return None
    index, size = _int(raw.get("engine")), _int(raw.get("engines"))
    if index is None or size is None:
        return None
    return {"name": raw["name"], "engine": index, "engines": size,
            "sent": _int(raw.get("sent_to_other_engines")) or 0}


def _counts(raw: Any) -> list[tuple[str, int]] | None:
    """A {name: count} object as pairs, largest first; None when absent."""
    if not isinstance(raw, dict):
        return None
    pairs = [(str(k), n) for k, v in raw.items() if (n := _int(v)) is not None]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))


def _clean_dead_letter(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    return {"time": _float(raw.get("time")), "target": _str(raw.get("target")) or "?",
            "sender": _str(raw.get("sender")), "reason": _str(raw.get("reason")) or "?",
            "type": _str(raw.get("type")) or "?", "repr": _str(raw.get("repr")) or ""}


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


def fmt_count(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if value < 10**9 else f"{value / 1e9:.2f}G"


def fmt_short(value: int | None) -> str:
    """A count in at most 5 cells: 999, 12.3k, 4.5M."""
    if value is None:
        return "-"
    if value < 10**4:
        return str(value)
    if value < 10**6:
        return f"{value / 1e3:.1f}k" if value < 10**5 else f"{value // 1000}k"
    return f"{value / 1e6:.1f}M" if value < 10**8 else f"{value / 1e9:.1f}G"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 3600:
        return f"{value:.0f}s"
    return f"{value / 3600:.1f}h"


def fmt_share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%" if value >= 0.1 else \
        f"{value * 100:.1f}%"


def fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def fmt_clock(epoch: float | None) -> str:
    if epoch is None:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}"


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


def natural_key(text: str) -> list[Any]:
    """worker-2 before worker-10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text)]


###############################################################################
# Columns
# Every column: title, width, cell text, sort key, importance (0 = kept longest).
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
        self.ellipsis = "\u2026" if unicode else "~"

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


def _num(value: Any) -> float:
    """A sort key for a number that may be absent: absent sorts below every number."""
    return -math.inf if value is None else float(value)


class Column:
    """One table column.  ``width`` is the most it takes; text columns may take less."""

    def __init__(self, key: str, title: str, width: int, cell: Callable[[Row, Theme], str],
                 sort: Callable[[Row], Any], importance: int, right: bool = True,
                 text: str | None = None, help: str = "", field: str | None = None) -> None:
        self.key = key              # its name for --sort and the settings line
        self.title = title
        self.width = width
        self.cell = cell
        self.sort = sort
        self.importance = importance
        self.right = right
        self.text = text            # the row field whose longest value sizes it, if any
        self.help = help
        self.numeric = right        # numbers sort largest first
        self.field = field          # a field older engines do not send: hidden when absent

    def fit(self, text: str, width: int) -> str:
        text = text[:width]
        return text.rjust(width) if self.right else text.ljust(width)


def _inbox(row: Row, theme: Theme) -> str:
    return f"{row['inbox']}/{row['capacity']}"


def _fill(row: Row, theme: Theme) -> str:
    return bar(row["inbox"], row["capacity"], 6, theme.unicode)


def _hwm(row: Row, theme: Theme) -> str:
    return fmt_short(row["inbox_hwm"])


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _fill_key(row: Row) -> float:
    return row["inbox"] / row["capacity"] if row["capacity"] else 0.0


def _text_key(field: str) -> Callable[[Row], Any]:
    return lambda r: natural_key(r[field] or "")


def _optional(key: str, title: str, width: int, field: str, fmt: Callable[[Any], str],
              importance: int, help: str) -> Column:
    """A number column for a field an older engine may not send."""
    return Column(key, title, width, lambda r, t: fmt(r[field]), lambda r: _num(r[field]),
                  importance, field=field, help=help)


COLUMNS = {c.key: c for c in [
    Column("id", "ID", 0, lambda r, t: r["id"], lambda r: natural_key(r["id"]), -1,
           right=False, help="actor id"),
    Column("type", "TYPE", 20, lambda r, t: r["type"], _text_key("type"), 5, right=False,
           text="type", help="actor class"),
    Column("msgs/s", "MSGS/S", 8, lambda r, t: fmt_rate(r["messages_per_s"]),
           lambda r: r["messages_per_s"], 0, help="messages handled per second"),
    _optional("ms/s", "MS/S", 6, "receive_ms_per_s", _fmt_ms, 3,
              "milliseconds spent in receive per second"),
    _optional("busy", "BUSY", 5, "busy_share", fmt_share, 4, "share of the engine thread"),
    Column("inbox", "INBOX", 13, _inbox, lambda r: r["inbox"], 1,
           help="messages waiting / capacity"),
    _optional("hwm", "HWM", 6, "inbox_hwm", fmt_short, 2,
              "highest inbox length since the last snapshot"),
    Column("fill", "FILL", 6, _fill, _fill_key, 12, right=False, help="inbox fill bar"),
    Column("overflow", "OVERFLOW", 11, lambda r, t: r["overflow"] or "-",
           _text_key("overflow"), 11, right=False, text="overflow", field="overflow",
           help="what a send to a full inbox does"),
    Column("total", "TOTAL", 11, lambda r, t: fmt_count(r["messages_total"]),
           lambda r: r["messages_total"], 6, help="messages handled in all"),
    _optional("restarts", "RST", 5, "restarts", fmt_short, 7, "restarts by its supervisor"),
    _optional("failures", "FAIL", 5, "failures", fmt_short, 8, "exceptions its receive raised"),
    _optional("dead", "DEAD", 5, "dead_letters", fmt_short, 9, "dead letters addressed to it"),
    _optional("receive", "RECV", 6, "receive_s", fmt_seconds, 10,
              "seconds spent in receive in all"),
    Column("waits", "WAITS ON", 30, lambda r, t: r["waiting_on"] or "-",
           _text_key("waiting_on"), 2, right=False, text="waiting_on", field="waiting_on",
           help="why it takes no turns: room in a full inbox, a full link, an await"),
    Column("parent", "PARENT", 20, lambda r, t: r["parent"] or "-", _text_key("parent"), 13,
           right=False, text="parent", help="parent id"),
    Column("strategy", "STRATEGY", 60, lambda r, t: r["strategy"] or "-",
           _text_key("strategy"), 1, right=False, text="strategy", field="strategy",
           help="supervisor strategy for its children"),
    Column("actors", "ACTORS", 7, lambda r, t: str(r["actors"]), lambda r: r["actors"], 0,
           help="actors of this type"),
]}
TABLE_ORDER = ["id", "type", "msgs/s", "ms/s", "busy", "inbox", "hwm", "fill", "waits",
               "overflow", "total", "restarts", "failures", "dead", "receive", "parent"]
GROUP_ORDER = ["id", "actors", "msgs/s", "ms/s", "busy", "inbox", "hwm", "total", "restarts",
               "failures", "dead", "receive"]
TREE_ORDER = ["id", "type", "strategy", "restarts", "failures", "dead", "msgs/s", "inbox"]
SORTS = TABLE_ORDER             # every column of the table sorts


def reported(order: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """The column keys whose field the engine sends (an older one sends fewer)."""
    return [k for k in order if (field := COLUMNS[k].field) is None or not rows
            or any(r.get(field) is not None for r in rows)]


def layout_columns(order: Sequence[str], rows: Sequence[Row], width: int,
                   id_need: int) -> tuple[int, list[tuple[Column, int]]]:
    """The id column's width and the other columns with theirs, for ``width`` cells.

    The id gets what its longest id needs, up to ID_SHARE of the width; the
    other columns come in by importance while they fit; what is left goes back
    to the id, up to its need.
    """
    id_width = min(id_need, max(ID_MIN, int(width * ID_SHARE)))
    keys = set(reported(order, rows))
    free = width - 1 - id_width           # one leading space
    chosen: dict[str, int] = {}
    for key in sorted(order[1:], key=lambda k: COLUMNS[k].importance):
        column = COLUMNS[key]
        if key not in keys:
            continue        # an older engine does not send it
        cells = column.width
        if column.text is not None:
            longest = max((len(r[column.text] or "-") for r in rows), default=1)
            cells = max(len(column.title), min(column.width, longest))
        if cells + 1 <= free:
            chosen[key] = cells
            free -= cells + 1
    id_width += min(max(free, 0), max(id_need - id_width, 0))
    return max(id_width, 1), [(COLUMNS[k], chosen[k]) for k in order[1:] if k in chosen]


###############################################################################
# Model
# The snapshots, the histories, the engine's stuck line and what the user chose.
###############################################################################

class Shown:
    """What the screen shows: the live data, or a frozen copy of it while paused."""

    def __init__(self, snapshot: Snapshot | None, history: Sequence[float],
                 actor_history: Mapping[str, Sequence[float]]) -> None:
        self.snapshot = snapshot
        self.history = history
        self.actor_history = actor_history

    def frozen(self) -> Shown:
        return Shown(self.snapshot, tuple(self.history),
                     {k: tuple(v) for k, v in self.actor_history.items()})


class Model:
    """The data and the user's choices; no curses in here."""

    def __init__(self, sort: str = "msgs/s") -> None:
        self.latest: Snapshot | None = None            # the newest snapshot
        self.history: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self.actor_history: dict[str, collections.deque[float]] = {}
        self.frozen: Shown | None = None               # what stays on screen while paused
        self.sort = sort if sort in SORTS else "msgs/s"  # a column key
        self.reverse = False                           # the sort's other direction
        self.filter = ""                               # substring of id or type
        self.type_filter: str | None = None            # one type (Enter on it, grouped)
        self.grouped = False                           # one row per actor type
        self.screen = "table"                          # "table", "tree" or "dead"
        self.help = False                              # the key list over the screen
        self.selected: str | None = None               # id (or type) under the cursor
        self.cursor = 0                                # its index in rows()
        self.top = 0                                   # first row shown
        self.dead_top = 0                              # first dead letter shown
        self.detail: str | None = None                 # the actor whose detail is open
        self.connected = False
        self.path = ""
        self.status = ""                               # one line for the user, bottom row
        self.received_at: float | None = None          # monotonic time of the last snapshot
        self.stuck: dict[str, Any] | None = None       # the engine's last "stuck" line
        self.stuck_at = 0.0                            # monotonic time it came

    @property
    def paused(self) -> bool:
        return self.frozen is not None

    @property
    def shown(self) -> Shown:
        if self.frozen is not None:
            return self.frozen
        return Shown(self.latest, self.history, self.actor_history)

    @property
    def snapshot(self) -> Snapshot | None:
        return self.shown.snapshot

    # -- feed ----------------------------------------------------------------

    def receive(self, line: dict[str, Any], now: float = 0.0) -> None:
        kind = line.get("type")
        if kind == "snapshot":
            self._snapshot(line, now)
        elif kind == "stuck":
            self.stuck, self.stuck_at = line, now
        elif kind == "unstuck":
            self.stuck = None
        elif kind == "error":
            self.status = f"engine: {line.get('error', 'error')}"
        elif kind == "reply" and line.get("cmd") == "poison_pill":
            self.status = f"poison pill sent to {line.get('id')!r}"
        elif kind == "reply" and line.get("cmd") == "interval":
            self.status = f"interval now {line.get('seconds')} s"

    def _snapshot(self, raw: dict[str, Any], now: float) -> None:
        if raw.get("v") != FORMAT:
            self.status = (f"this engine speaks feed version {raw.get('v')!r}; this inspector "
                           f"reads version {FORMAT}: use the inspector_curses.py that came with "
                           f"its backstage.py")
            return
        snap = clean_snapshot(raw)
        old = self.latest
        if old is not None and old["engine"]["pid"] != snap["engine"]["pid"]:
            self.history.clear()           # another engine (a restart): new histories
            self.actor_history.clear()
            self.stuck = None
        self.latest = snap
        self.received_at = now
        self.history.append(snap["engine"]["messages_per_s"])
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

    def toggle_pause(self) -> None:
        self.frozen = None if self.frozen is not None else self.shown.frozen()

    def stalled_for(self, now: float) -> float | None:
        """Seconds without a snapshot, when that is more than a few intervals."""
        if not self.connected or self.received_at is None:
            return None
        snap = self.latest
        interval = snap["interval"] if snap is not None else 0.5
        waited = now - self.received_at
        return waited if waited > max(STUCK_INTERVALS * interval, STUCK_MIN_S) else None

    # -- the table -----------------------------------------------------------

    def order(self) -> list[str]:
        if self.screen == "tree":
            return TREE_ORDER
        return GROUP_ORDER if self.grouped else TABLE_ORDER

    def rows(self) -> list[Row]:
        """The rows the table shows, filtered, grouped and sorted (tree: in tree order)."""
        snap = self.snapshot
        actors: list[Row] = snap["actors"] if snap else []
        if self.screen == "tree":
            return [row for _, row in tree_rows(actors, self.filter)]
        if self.type_filter is not None:
            actors = [r for r in actors if r["type"] == self.type_filter]
        if self.filter:
            needle = self.filter.lower()
            actors = [r for r in actors
                      if needle in r["id"].lower() or needle in r["type"].lower()]
        rows = group_by_type(actors) if self.grouped else actors
        key = self.sort if self.sort in self.order() else "msgs/s"
        column = COLUMNS[key]
        descending = column.numeric != self.reverse
        ordered = sorted(rows, key=lambda r: natural_key(r["id"]))
        return sorted(ordered, key=column.sort, reverse=descending)

    def row(self, actor_id: str) -> Row | None:
        for row in self.snapshot["actors"] if self.snapshot else ():
            if row["id"] == actor_id:
                found: Row = row
                return found
        return None

    def place_cursor(self, rows: list[Row], height: int) -> None:
        """Keep the cursor on the selected id, and on screen (before a frame is drawn)."""
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
        if self.screen == "dead":
            self.dead_top = max(0, self.dead_top + delta)
            return
        rows = self.rows()
        if rows:
            self.cursor = max(0, min(self.cursor + delta, len(rows) - 1))
            self.selected = rows[self.cursor]["id"]


def group_by_type(actors: list[Row]) -> list[Row]:
    """One row per actor type, with the sums of its actors (None when none reports one)."""
    groups: dict[str, Row] = {}
    summed = ("messages_per_s", "inbox", "capacity", "messages_total", "restarts", "failures",
              "dead_letters", "receive_s", "receive_ms_per_s", "busy_share", "inbox_hwm")
    for row in actors:
        group = groups.get(row["type"])
        if group is None:
            group = groups[row["type"]] = {
                "id": row["type"], "type": row["type"], "actors": 0, "parent": None,
                "group": True, "state": "running", "overflow": None, "strategy": None,
                "waiting_on": None, "waits": [],
                **{name: None for name in summed}}
        group["actors"] += 1
        for name in summed:
            if row[name] is not None:
                group[name] = row[name] + (group[name] or 0)
    for group in groups.values():
        for name in ("messages_per_s", "inbox", "capacity", "messages_total"):
            group[name] = group[name] or 0
    return list(groups.values())


def tree_rows(actors: list[Row], needle: str = "") -> list[tuple[int, Row]]:
    """(depth, row) in tree order: each parent, then its children by id.

    With ``needle``, the actors whose id or type contains it, and their ancestors.
    """
    by_id = {r["id"]: r for r in actors}
    children: dict[str | None, list[Row]] = {}
    for row in actors:
        parent = row["parent"] if row["parent"] in by_id else None
        children.setdefault(parent, []).append(row)
    keep: set[str] | None = None
    if needle:
        keep = set()
        low = needle.lower()
        for row in actors:
            if low in row["id"].lower() or low in row["type"].lower():
                node: Row | None = row
                while node is not None and node["id"] not in keep:
                    keep.add(node["id"])
                    node = by_id.get(node["parent"]) if node["parent"] is not None else None
    out: list[tuple[int, Row]] = []
    stack = [(0, r) for r in sorted(children.get(None, []), key=lambda r: natural_key(r["id"]),
                                    reverse=True)]
    while stack:                        # iterative: a deep tree is no RecursionError
        depth, row = stack.pop()
        if keep is not None and row["id"] not in keep:
            continue
        out.append((depth, row))
        kids = sorted(children.get(row["id"], []), key=lambda r: natural_key(r["id"]),
                      reverse=True)
        stack += [(depth + 1, kid) for kid in kids]
    return out


###############################################################################
# Drawing
# Painter clips, makes text safe and swallows curses errors; View draws a frame.
###############################################################################

class Window(Protocol):
    """What the drawing uses of a curses window."""

    def getmaxyx(self) -> tuple[int, int]: ...

    def addnstr(self, y: int, x: int, text: str, n: int, attr: int = ...) -> None: ...


class Painter:
    """Writes safe text clipped to the window; a curses error never escapes a frame."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.height, self.width = window.getmaxyx()

    def text(self, y: int, x: int, text: str, attr: int = 0) -> None:
        if not (0 <= y < self.height and 0 <= x < self.width):
            return
        try:
            self.window.addnstr(y, x, safe(text), self.width - x, attr)
        except curses.error:
            pass    # the bottom-right cell, or a size that changed under us

    def line(self, y: int, text: str, attr: int = 0) -> None:
        """A whole row, padded so a coloured row spans the width."""
        self.text(y, 0, text.ljust(self.width)[:self.width], attr)


def fit_fields(fields: Sequence[tuple[int, str]], width: int, sep: str = "  ") -> str:
    """The fields (importance, text) that fit in ``width``, in their order.

    The least important go first (the highest number); none is ever cut.
    """
    kept = list(range(len(fields)))
    while kept and len(sep.join(fields[i][1] for i in kept)) > width:
        kept.remove(max(kept, key=lambda i: (fields[i][0], i)))
    return sep.join(fields[i][1] for i in kept)


class View:
    """Draws one frame of the model for the window's size; changes nothing in the model."""

    MIN_WIDTH, MIN_HEIGHT = 20, 4

    def __init__(self, theme: Theme) -> None:
        self.theme = theme

    def top_lines(self, model: Model, now: float) -> int:
        """Lines above the table: the banner when stuck, the header 2, settings 1, titles 1."""
        return 4 + (1 if self.banner(model, now) else 0)

    def table_height(self, height: int, model: Model | None = None, now: float = 0.0) -> int:
        top = self.top_lines(model, now) if model is not None else 4
        return max(height - top - 1, 1)

    def draw(self, window: Window, app: App) -> None:
        paint = Painter(window)
        model = app.model
        if paint.width < self.MIN_WIDTH or paint.height < self.MIN_HEIGHT:
            paint.text(0, 0, "terminal too small"[:paint.width])
            paint.text(1, 0, "q quits"[:paint.width])
            return
        y = 0
        banner = self.banner(model, app.now)
        if banner:
            paint.line(0, " " + banner, self.theme.warn | curses.A_REVERSE)
            y = 1
        self.draw_header(paint, model, y)
        if model.help:
            self.draw_help(paint, app, y + 2)
        elif model.detail is not None:
            self.draw_detail(paint, model, y + 2)
        elif model.screen == "dead":
            self.draw_dead_letters(paint, model, y + 2)
        else:
            self.draw_table(paint, model, y + 2)
        self.draw_bottom(paint, app)

    # -- parts ---------------------------------------------------------------

    def banner(self, model: Model, now: float) -> str:
        """The stuck-engine line, or "" when the engine moves."""
        waited = model.stalled_for(now)
        stuck = model.stuck if model.connected else None
        if waited is None and stuck is None:
            return ""
        parts = [f"no snapshot for {waited:.0f} s" if waited is not None else ""]
        if stuck is not None:
            held = (_float(stuck.get("for_s")) or 0.0) + max(now - model.stuck_at, 0.0)
            what = str(stuck.get("callback") or "a callback")
            actor = stuck.get("actor")
            who = f"{what} (actor {actor})" if isinstance(actor, str) and actor not in what \
                else what
            since = _float(stuck.get("since"))
            parts.append(f"{who} has held the engine thread for {held:.1f} s"
                         + (f", since {fmt_clock(since)[:8]}" if since else ""))
        title = "ENGINE STUCK: " if stuck is not None else "ENGINE STUCK? "
        return title + "; ".join(p for p in parts if p)

    def draw_header(self, paint: Painter, model: Model, y: int) -> None:
        theme = self.theme
        snap = model.snapshot
        if snap is None:
            title = "backstage inspector"
            if not model.connected:
                title += f"  disconnected from {model.path}; retrying every {RECONNECT_EVERY:g} s"
            else:
                title += f"  connected to {model.path}; waiting for the first snapshot"
            paint.line(y, " " + title, theme.header)
            return
        eng = snap["engine"]
        fields = [
            (0, eng["program"]), (1, f"pid {eng['pid']}"), (6, eng["backend"]),
            (5, f"up {fmt_duration(eng['uptime'])}"), (2, f"actors {eng['actors']}"),
            (3, f"dead letters {fmt_count(eng['dead_letters'])}"),
            (4, f"restarts {fmt_count(eng['restarts'])}"),
            (7, f"failures {fmt_count(eng['failures'])}"),
            (8, f"busy {fmt_share(eng['busy_share'])}"),
            (9, f"clients {eng['clients'] if eng['clients'] is not None else '-'}"),
        ]
        if eng["waiting"]:
            fields.insert(5, (2, f"waiting {eng['waiting']}"))
        if eng["restarts"] is None:
            fields = [f for f in fields if not f[1].startswith("restarts")]
        if eng["failures"] is None:
            fields = [f for f in fields if not f[1].startswith(("failures", "busy"))]
        state = ("" if model.connected else "  DISCONNECTED, retrying") + \
            ("  PAUSED" if model.paused else "")
        paint.line(y, " " + fit_fields(fields, paint.width - 2 - len(state)) + state,
                   theme.header)
        rate = (f" msgs/s {fmt_rate(eng['messages_per_s'])} "
                f"(avg {fmt_rate(eng['messages_per_s_avg'])})  ")
        tail = f"  total {fmt_count(eng['messages_total'])}"
        if len(rate) + len(tail) >= paint.width:
            tail = ""
        room = paint.width - len(rate) - len(tail) - 1
        spark = sparkline(model.shown.history, min(room, HISTORY), theme.sparks)
        paint.text(y + 1, 0, rate, theme.title)
        paint.text(y + 1, len(rate), spark, theme.good)
        paint.text(y + 1, len(rate) + len(spark), tail)

    def table_layout(self, model: Model, rows: list[Row],
                     width: int) -> tuple[int, list[tuple[Column, int]]]:
        depth = 2 if model.screen == "tree" else 0
        id_need = max([len(r["id"]) for r in rows] + [2]) + depth * (
            max((d for d, _ in tree_rows(model.snapshot["actors"] if model.snapshot else [])),
                default=0) if depth else 0)
        return layout_columns(model.order(), rows, width, id_need)

    def draw_table(self, paint: Painter, model: Model, y: int) -> None:
        theme = self.theme
        rows = model.rows()
        height = paint.height - y - 3
        settings = self.settings_line(model, rows)
        paint.text(y, 0, fit_fields(settings, paint.width - 1, "   "), theme.dim)
        id_width, columns = self.table_layout(model, rows, paint.width)
        first = "TYPE" if model.grouped and model.screen == "table" else "ID"
        titles = [(c, w) for c, w in columns]
        mark = ("\u25b2" if theme.unicode else "^") if model.reverse else \
            ("\u25bc" if theme.unicode else "v")
        if model.sort == "id":
            first += mark
        header = " " + first.ljust(id_width) + "".join(
            " " + c.fit(c.title + (mark if c.key == model.sort and model.screen != "tree"
                                   else ""), w) for c, w in titles)
        paint.line(y + 1, header, theme.title | theme.header)
        if not rows:
            paint.text(y + 2, 1, "no actor matches the filter"
                       if model.filter or model.type_filter is not None else "no actors",
                       theme.dim)
            return
        visible = rows[model.top:model.top + max(height, 0)]
        depths = ({r["id"]: d for d, r in tree_rows(model.snapshot["actors"])}
                  if model.screen == "tree" and model.snapshot else {})
        shown_ids = self._ids(visible, depths, id_width)
        for i, (row, shown) in enumerate(zip(visible, shown_ids, strict=True)):
            text = " " + shown.ljust(id_width) + "".join(
                " " + c.fit(c.cell(row, theme), w) for c, w in columns)
            attr = theme.selected if model.top + i == model.cursor else 0
            if not attr and row.get("state", "running") != "running":
                attr = theme.dim
            paint.line(y + 2 + i, text, attr)

    def _ids(self, rows: list[Row], depths: dict[str, int], width: int) -> list[str]:
        """The id cells of the visible rows: indented in the tree, elided to differ."""
        if not depths:
            return elide_unique([safe(r["id"]) for r in rows], width, self.theme.ellipsis)
        out = []
        for row in rows:
            indent = "  " * min(depths.get(row["id"], 0), max(width // 4, 0))
            out.append(indent + elide(safe(row["id"]), max(width - len(indent), 1),
                                      self.theme.ellipsis))
        return out

    def settings_line(self, model: Model, rows: list[Row]) -> list[tuple[int, str]]:
        direction = "reversed" if model.reverse else ""
        fields: list[tuple[int, str]] = []
        if model.screen == "tree":
            fields.append((0, "supervision tree (t: back to the table)"))
        else:
            fields.append((0, f" sort: {model.sort}" + (f" {direction}" if direction else "")))
        if model.type_filter is not None and model.screen == "table":
            fields.append((1, f"type: {model.type_filter} (Esc: all types)"))
        if model.filter:
            fields.append((1, f"filter: {model.filter}"))
        if model.grouped and model.screen == "table":
            fields.append((2, "grouped by type"))
        total = len(model.snapshot["actors"]) if model.snapshot else 0
        if model.filter or (model.type_filter is not None and model.screen == "table"):
            fields.append((1, f"{len(rows)} of {total} shown"))
        return fields

    def draw_dead_letters(self, paint: Painter, model: Model, y: int) -> None:
        theme = self.theme
        snap = model.snapshot
        eng = snap["engine"] if snap else {}
        recent = eng.get("dead_letters_recent")
        title = f" dead letters: {fmt_count(eng.get('dead_letters'))} in all" + \
            "   (d: back to the table)"
        paint.text(y, 0, title, theme.title)
        if recent is None:
            paint.text(y + 2, 1, "this engine does not report dead letters one by one (an "
                                 "older backstage.py): only the total above", theme.dim)
            return
        by_reason = eng.get("dead_letters_by_reason") or []
        by_target = eng.get("dead_letters_by_target") or []
        paint.text(y + 1, 1, fit_fields([(i, f"{safe(k)} {fmt_count(n)}")
                                         for i, (k, n) in enumerate(by_reason)],
                                        paint.width - 13, ", ").join(["by reason: ", ""]))
        paint.text(y + 2, 1, fit_fields([(i, f"{safe(k)} {fmt_count(n)}")
                                         for i, (k, n) in enumerate(by_target)],
                                        paint.width - 13, ", ").join(["by target: ", ""]))
        width = paint.width - 1
        names = max([len(d["target"]) for d in recent] + [len(d["sender"] or "-")
                                                          for d in recent] + [6])
        name_w = min(names, max((width - 12 - 16 - 14) // 3, 6))
        reason_w = min(max([len(d["reason"]) for d in recent] + [6]), 14)
        type_w = min(max([len(d["type"]) for d in recent] + [4]), 16)
        head = (f" {'TIME':<12} {'TARGET':<{name_w}} {'SENDER':<{name_w}} "
                f"{'REASON':<{reason_w}} {'TYPE':<{type_w}} MESSAGE")
        paint.line(y + 3, head, theme.title | theme.header)
        if not recent:
            paint.text(y + 4, 1, "no dead letters", theme.dim)
        top = min(model.dead_top, max(len(recent) - 1, 0))
        for i, dead in enumerate(recent[top:top + max(paint.height - y - 5, 0)]):
            paint.line(y + 4 + i, (
                f" {fmt_clock(dead['time']):<12} "
                f"{elide(safe(dead['target']), name_w, theme.ellipsis):<{name_w}} "
                f"{elide(safe(dead['sender'] or '-'), name_w, theme.ellipsis):<{name_w}} "
                f"{dead['reason'][:reason_w]:<{reason_w}} {dead['type'][:type_w]:<{type_w}} "
                f"{safe(dead['repr'])}"))

    def draw_help(self, paint: Painter, app: App, y: int) -> None:
        theme = self.theme
        paint.text(y, 1, "keys (any key closes this)", theme.title)
        lines = [f"{label:<16} {text}" for label, text in app.key_help()]
        lines.append("")
        lines.append("columns: " + ", ".join(f"{COLUMNS[k].title} {COLUMNS[k].help}"
                                             for k in TABLE_ORDER))
        row = y + 1
        for line in lines:
            while line and row < paint.height - 1:
                paint.text(row, 2, line[:paint.width - 3])
                line = line[paint.width - 3:]
                row += 1

    def draw_detail(self, paint: Painter, model: Model, y: int) -> None:
        theme = self.theme
        actor_id = model.detail or ""
        row = model.row(actor_id)
        paint.line(y, f" actor {actor_id}" + ("" if row else "  (stopped)"), theme.title)
        if row is None or model.snapshot is None:
            paint.text(y + 2, 1, "this actor is no longer in the engine's registry", theme.warn)
            paint.text(y + 3, 1, "Esc or Enter goes back to the table", theme.dim)
            return
        snap = model.snapshot
        children = [r["id"] for r in snap["actors"] if r["parent"] == actor_id]
        subs = ", ".join(f"{pub}:{topic}" for pub, topic in row["subscriptions"]) or "-"
        last = row["last_message_at"]
        age = f"{max(snap['time'] - last, 0):.1f} s ago" if last is not None else "never"
        ms = row["receive_ms_per_s"]
        lines = [
            ("type", row["type"]),
            ("state", row["state"]),
            ("parent", row["parent"] or "- (top level)"),
            ("children", ", ".join(children) or "-"),
            ("strategy", row["strategy"] or "-"),
            ("subscriptions", subs),
            ("subscribers", str(row["subscribers"])),
            ("waiting on", "; ".join(map(describe_wait, row["waits"])) or "-"),
            ("inbox", f"{row['inbox']} / {row['capacity']} (high-water "
                      f"{fmt_count(row['inbox_hwm'])}, overflow {row['overflow'] or '-'})  "
                      f"{bar(row['inbox'], row['capacity'], 20, theme.unicode)}"),
            ("messages", f"{fmt_count(row['messages_total'])} total, "
                         f"{fmt_rate(row['messages_per_s'])}/s now"),
            ("in receive", f"{fmt_seconds(row['receive_s'])} total, "
                           f"{'-' if ms is None else f'{ms:.1f}'} ms/s, "
                           f"{fmt_share(row['busy_share'])} of the engine thread"),
            ("failures", f"{fmt_count(row['failures'])}, restarts "
                         f"{fmt_count(row['restarts'])}, dead letters to it "
                         f"{fmt_count(row['dead_letters'])}"),
            ("last message", age),
        ]
        y += 1
        for label, value in lines:
            paint.text(y, 1, f"{label:<14}", theme.dim)
            paint.text(y, 16, value)
            y += 1
        history = list(model.shown.actor_history.get(actor_id, ()))
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
            paint.line(y, " Esc back  k stop  p pause  ? help  q quit", self.theme.dim)
        else:
            paint.line(y, " " + fit_fields(HELP if self.theme.unicode else HELP_ASCII,
                                           paint.width - 2), self.theme.dim)


# The bottom line: (importance, text), the least important dropped first.
HELP = [(0, "? help"), (2, "s/S sort"), (5, "r reverse"), (3, "/ filter"), (6, "d dead letters"),
        (7, "t tree"), (8, "g group"), (4, "\u23ce detail"), (9, "k stop"), (10, "p pause"),
        (1, "q quit")]
HELP_ASCII = [(i, h.replace("\u23ce", "Enter")) for i, h in HELP]


###############################################################################
# Input
# App owns the model, the feed and the mode; press() maps keys through one table.
###############################################################################

ESC = 27
ENTER_KEYS = (10, 13, curses.KEY_ENTER)
BACKSPACE_KEYS = (8, 127, curses.KEY_BACKSPACE)


class App:
    """The inspector's state machine: modes table, filter, confirm; screens and help."""

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
        self.now = 0.0                  # monotonic time of the frame being drawn
        move = self.model.move
        # One table: (keys, label for the help, what it does, action).
        self.table: list[tuple[Sequence[int], str, str, Callable[[], bool | None]]] = [
            ((ord("?"), ord("h"), curses.KEY_F1), "? h F1", "this help", self.show_help),
            ((ord("s"),), "s", "sort by the next column", lambda: self.cycle_sort(1)),
            ((ord("S"),), "S", "sort by the previous column", lambda: self.cycle_sort(-1)),
            ((ord("r"),), "r", "reverse the sort", self.reverse),
            ((ord("/"),), "/", "filter by id or type (Enter keeps, Esc restores)",
             self.start_filter),
            ((ord("g"),), "g", "group by type; Enter on a type shows its actors (Esc: the types)",
             self.toggle_group),
            ((ord("d"),), "d", "dead letters: the latest, by target, by reason",
             lambda: self.switch("dead")),
            ((ord("t"),), "t", "supervision tree: parents, children, strategy, restarts",
             lambda: self.switch("tree")),
            (ENTER_KEYS, "Enter", "the selected actor's detail", self.enter),
            ((ord("k"),), "k", "stop the selected actor with a poison pill (asks y/n)",
             self.ask_kill),
            ((ord("p"),), "p", "pause: everything on screen stays; p again shows the newest",
             self.toggle_pause),
            ((curses.KEY_UP, curses.KEY_DOWN), "Up Down", "move", lambda: None),
            ((curses.KEY_PPAGE, curses.KEY_NPAGE), "PgUp PgDn", "move a page", lambda: None),
            ((curses.KEY_HOME, curses.KEY_END), "Home End", "first, last", lambda: None),
            ((ESC, curses.KEY_LEFT, *BACKSPACE_KEYS), "Esc Left", "back", self.back),
            ((ord("q"), ord("Q")), "q", "quit", self.quit),
        ]
        self.keys: dict[int, Callable[[], bool | None]] = {
            key: action for keys, _, _, action in self.table for key in keys}
        self.keys.update({
            curses.KEY_UP: lambda: move(-1), curses.KEY_DOWN: lambda: move(1),
            curses.KEY_PPAGE: lambda: move(-self.page), curses.KEY_NPAGE: lambda: move(self.page),
            curses.KEY_HOME: lambda: move(-10**9), curses.KEY_END: lambda: move(10**9)})

    def key_help(self) -> list[tuple[str, str]]:
        return [(label, text) for _, label, text, _ in self.table]

    # -- the feed ------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Read what the feed sent; reconnect once a second while disconnected."""
        self.now = now
        conn = self.connection
        if not conn.connected and now >= self.next_attempt:
            self.next_attempt = now + RECONNECT_EVERY
            if conn.connect():
                self.model.status = ""
        for line in conn.poll():
            self.model.receive(line, now)
        self.model.connected = conn.connected
        self.model.path = conn.path
        problem = getattr(conn, "problem", "")
        if problem and not conn.connected:
            self.model.status = problem

    def layout(self, height: int, width: int) -> None:
        """Before each frame: fit the cursor and the page to this size (drawing only reads)."""
        model = self.model
        rows_height = self.view.table_height(height, model, self.now)
        self.page = max(rows_height - 1, 1)
        if model.screen != "dead" and model.detail is None and not model.help:
            model.place_cursor(model.rows(), rows_height)

    def render(self, window: Window) -> None:
        height, width = window.getmaxyx()
        self.layout(height, width)
        self.view.draw(window, self)

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
        if self.model.help:
            self.model.help = False
            return key not in (ord("q"), ord("Q"))
        action = self.keys.get(key)
        return action() is not False if action is not None else True

    def quit(self) -> bool:
        return False

    def show_help(self) -> None:
        self.model.help = True

    def cycle_sort(self, step: int) -> None:
        model = self.model
        rows = model.snapshot["actors"] if model.snapshot else []
        order = [k for k in reported(model.order(), rows) if k != "fill"] \
            if model.screen != "tree" else []
        if not order:
            model.status = "the tree is in tree order; t goes back to the sortable table"
            return
        index = order.index(model.sort) if model.sort in order else 0
        model.sort = order[(index + step) % len(order)]

    def reverse(self) -> None:
        self.model.reverse = not self.model.reverse

    def switch(self, screen: str) -> None:
        model = self.model
        model.screen = "table" if model.screen == screen else screen
        model.detail = None
        model.dead_top = 0

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
        model = self.model
        model.grouped = not model.grouped
        model.type_filter = None
        model.screen = "table"
        model.selected, model.cursor, model.top = None, 0, 0
        model.detail = None

    def toggle_pause(self) -> None:
        self.model.toggle_pause()

    def enter(self) -> None:
        model = self.model
        if model.detail is not None:
            model.detail = None
        elif model.screen == "dead":
            return
        elif model.grouped and model.screen == "table" and model.selected is not None:
            # Enter on a type: show its actors (that type's only; Esc goes back).
            model.type_filter, model.grouped = model.selected, False
            model.selected, model.cursor, model.top = None, 0, 0
        elif model.selected is not None:
            model.detail = model.selected

    def back(self) -> None:
        model = self.model
        if model.detail is not None:
            model.detail = None
        elif model.screen != "table":
            model.screen = "table"
        elif model.type_filter is not None:     # from one type's actors to the types
            model.selected, model.type_filter, model.grouped = model.type_filter, None, True
            model.cursor = model.top = 0

    def ask_kill(self) -> None:
        model = self.model
        target = model.detail or (None if model.grouped or model.screen == "dead"
                                  else model.selected)
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
# Screens: one frame loop for the main view and the built-in picker
###############################################################################

class Screen(Protocol):
    """What run_frames drives: one frame at a time."""

    def tick(self, now: float) -> None: ...

    def render(self, window: Window) -> None: ...

    def press(self, key: int) -> bool: ...


def terminal_size(fd: int) -> tuple[int, int] | None:
    """The terminal's real (lines, columns), asked of the tty (TIOCGWINSZ)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def follow_size(stdscr: Any, fd: int) -> None:
    """Make curses lay out for the terminal's real size.

    A KEY_RESIZE can be missed or carry a stale size (two resizes close
    together), so every frame asks the terminal itself.
    """
    size = terminal_size(fd)
    if size is not None and size != stdscr.getmaxyx() and min(size) > 0:
        curses.resizeterm(*size)
        curses.update_lines_cols()


def run_frames(stdscr: Any, screen: Screen) -> None:
    """The frame loop: size, feed, erase(); draw(); refresh(); one key."""
    _setup_screen(stdscr)
    fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
    while True:
        follow_size(stdscr, fd)
        screen.tick(time.monotonic())
        stdscr.erase()
        screen.render(stdscr)
        stdscr.refresh()
        key = stdscr.getch()
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            continue
        if key != -1 and not screen.press(key):
            return


def run_inspector(stdscr: Any, connection: Connection, sort: str) -> None:
    view = View(Theme.from_curses())
    run_frames(stdscr, App(Model(sort=sort), connection, view))


class Picker:
    """The built-in engine picker: a list, arrows, Enter, q."""

    def __init__(self, engines: list[Entry], theme: Theme | None = None) -> None:
        self.engines = engines
        self.cursor = 0
        self.theme = theme or Theme()
        self.chosen: Entry | None = None

    def tick(self, now: float) -> None:
        pass

    def render(self, window: Window) -> None:
        self.draw(window, self.theme)

    def press(self, key: int) -> bool:
        """False when done: self.chosen is the engine, or None to quit."""
        if key == curses.KEY_UP:
            self.cursor = max(self.cursor - 1, 0)
        elif key == curses.KEY_DOWN:
            self.cursor = min(self.cursor + 1, len(self.engines) - 1)
        elif key in ENTER_KEYS:
            self.chosen = self.engines[self.cursor]
            return False
        elif key in (ord("q"), ESC):
            return False
        return True

    def draw(self, window: Window, theme: Theme) -> None:
        paint = Painter(window)
        paint.line(0, " backstage inspector: several engines are running; pick one",
                   theme.header)
        for i, engine in enumerate(self.engines[:max(paint.height - 3, 0)]):
            paint.line(2 + i, "  " + engine.label(),
                       theme.selected if i == self.cursor else 0)
        paint.line(paint.height - 1, " arrows move  Enter opens  q quits", theme.dim)


def run_picker(stdscr: Any, engines: list[Entry]) -> Entry | None:
    picker = Picker(engines, Theme.from_curses())
    run_frames(stdscr, picker)
    return picker.chosen


def pick_with_curses_menu(engines: list[Entry]) -> Entry | None | bool:
    """curses-menu's picker; True when curses-menu is not installed."""
    try:
        import cursesmenu  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return True
    menu = getattr(cursesmenu, "CursesMenu", None)
    get_selection = getattr(menu, "get_selection", None) or getattr(
        getattr(cursesmenu, "SelectionMenu", None), "get_selection", None)
    if get_selection is None:
        return True
    index = get_selection([safe(e.label()) for e in engines], "backstage inspector",
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
# A cluster: every engine of one backstage.Cluster on this machine
# One row per engine and the cluster's totals; Enter opens an engine.
###############################################################################

CLUSTER_TITLES = ["ENGINE", "PID", "STATE", "ACTORS", "MSGS/S", "TOTAL", "TO OTHERS",
                  "DEAD", "BUSY", "WAITING"]


class Member:
    """One engine of the cluster: its feed and its model."""

    def __init__(self, engine: EngineSocket, max_line: int = MAX_LINE) -> None:
        self.index = (engine.cluster or {}).get("engine", 0)
        self.connection = Connection(engine.path, None, max_line)
        self.model = Model()
        self.next_attempt = 0.0


def cluster_table(members: Sequence[Member], size: int = 0,
                  ) -> tuple[list[list[str]], list[str]]:
    """One row of cells per engine, and the cluster's totals row; engines of the
    ``size`` whose feed is not on this machine (lost before the inspector
    started, or on another machine) have a row "not here"."""
    here = {m.index for m in members}
    missing = [[f"engine {i}", "-", "not here"] + ["-"] * 7
               for i in range(size) if i not in here]
    rows, totals = _member_rows(members)
    return rows + missing, totals           # (the cursor moves over the members' rows)


def _member_rows(members: Sequence[Member]) -> tuple[list[list[str]], list[str]]:
    rows = []
    total: dict[str, int] = {"actors": 0, "messages": 0, "sent": 0, "dead": 0, "waiting": 0}
    total_rate = 0.0
    for m in members:
        snap = m.model.latest
        if snap is None:
            rows.append([f"engine {m.index}", "-", "waiting" if m.model.connected
                         else "gone"] + ["-"] * 7)
            continue
        eng = snap["engine"]
        live = m.model.connected
        sent = (eng["cluster"] or {}).get("sent", 0)
        rate = eng["messages_per_s_avg"] if live else 0.0
        total["actors"] += eng["actors"] if live else 0
        total_rate += rate
        total["messages"] += eng["messages_total"]
        total["sent"] += sent
        total["dead"] += eng["dead_letters"]
        waiting = eng["waiting"] if live else None     # held by a full link, among others
        total["waiting"] += waiting or 0
        rows.append([f"engine {m.index}", str(eng["pid"]), "live" if live else "gone",
                     str(eng["actors"]), fmt_rate(rate), fmt_count(eng["messages_total"]),
                     fmt_count(sent), fmt_count(eng["dead_letters"]),
                     fmt_share(eng["busy_share"]), fmt_count(waiting)])
    totals = ["cluster", "", f"{sum(m.model.connected for m in members)} live",
              str(total["actors"]), fmt_rate(total_rate), fmt_count(total["messages"]),
              fmt_count(total["sent"]), fmt_count(total["dead"]), "",
              fmt_count(total["waiting"])]
    return rows, totals


def format_table(rows: Sequence[Sequence[str]], width: int | None = None) -> list[str]:
    """Rows of cells as aligned lines: the first column left, the others right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return lines if width is None else [line[:width] for line in lines]


class ClusterApp:
    """The cluster screen: every engine's feed read each frame; Enter opens one
    engine's usual view (its q comes back here); q here quits."""

    def __init__(self, entry: ClusterEntry, sort: str = "msgs/s",
                 theme: Theme | None = None, max_line: int = MAX_LINE) -> None:
        self.entry = entry
        self.members = [Member(e, max_line) for e in entry.engines]
        self.sort = sort
        self.theme = theme or Theme()
        self.cursor = 0
        self.inner: App | None = None

    def tick(self, now: float) -> None:
        for m in self.members:
            if self.inner is not None and m.connection is self.inner.connection:
                continue                    # the open engine's view reads it
            conn = m.connection
            if not conn.connected and conn.path and now >= m.next_attempt \
                    and os.path.exists(conn.path):
                m.next_attempt = now + RECONNECT_EVERY
                conn.connect()
            for line in conn.poll():
                m.model.receive(line, now)
            m.model.connected = conn.connected
        if self.inner is not None:
            self.inner.tick(now)

    def render(self, window: Window) -> None:
        if self.inner is not None:
            self.inner.render(window)
            return
        paint = Painter(window)
        theme = self.theme
        entry = self.entry
        paint.line(0, f" backstage inspector: cluster {entry.name}, {len(self.members)} of "
                      f"{entry.size} engines on this machine", theme.header)
        rows, totals = cluster_table(self.members, self.entry.size)
        lines = format_table([CLUSTER_TITLES, *rows, totals], paint.width - 2)
        paint.line(2, " " + lines[0], theme.title)
        for i, line in enumerate(lines[1:-1]):
            paint.line(3 + i, " " + line, theme.selected if i == self.cursor else 0)
        paint.line(3 + len(rows), " " + lines[-1], theme.title)
        paint.line(paint.height - 1, " Up Down move  Enter opens the engine (q there comes "
                                     "back)  q quits", theme.dim)

    def press(self, key: int) -> bool:
        if self.inner is not None:
            if not self.inner.press(key):
                self.inner = None
            return True
        if key == curses.KEY_UP:
            self.cursor = max(self.cursor - 1, 0)
        elif key == curses.KEY_DOWN:
            self.cursor = min(self.cursor + 1, len(self.members) - 1)
        elif key in ENTER_KEYS:
            m = self.members[self.cursor]
            m.model.sort = self.sort
            self.inner = App(m.model, m.connection, View(self.theme))
        elif key in (ord("q"), ord("Q"), ESC):
            return False
        return True


def run_cluster(stdscr: Any, entry: ClusterEntry, sort: str, max_line: int) -> None:
    run_frames(stdscr, ClusterApp(entry, sort, Theme.from_curses(), max_line))


def format_cluster_once(entry: ClusterEntry, max_line: int = MAX_LINE) -> str:
    """The cluster table, from one snapshot of each engine."""
    members = [Member(e, max_line) for e in entry.engines]
    for m in members:
        try:
            m.model.receive(read_one_snapshot(m.connection.path, max_line=max_line))
            m.model.connected = True
        except OSError:
            m.model.connected = False
    rows, totals = cluster_table(members, entry.size)
    head = (f"cluster {entry.name}: {len(members)} of {entry.size} engines on this machine")
    return "\n".join(safe(line) for line in [head, *format_table([CLUSTER_TITLES, *rows,
                                                                    totals])])


###############################################################################
# --once: one snapshot as plain text
###############################################################################

def format_once(raw: Snapshot, sort: str = "msgs/s") -> str:
    model = Model(sort=sort)
    model.receive(raw)
    snap = model.snapshot
    if snap is None:
        return safe(model.status)
    eng = snap["engine"]
    out = [f"{eng['program']}  pid {eng['pid']}  backend {eng['backend']}  "
           f"up {fmt_duration(eng['uptime'])}  actors {eng['actors']}  "
           f"msgs/s {fmt_rate(eng['messages_per_s_avg'])}  "
           f"total {fmt_count(eng['messages_total'])}  "
           f"dead letters {fmt_count(eng['dead_letters'])}"]
    rows = model.rows()
    theme = Theme()
    width = max([len("ID")] + [len(r["id"]) for r in rows])
    columns = [COLUMNS[k] for k in reported(TABLE_ORDER[1:], snap["actors"]) if k != "fill"]
    widths = [max([len(c.title)] + [len(c.cell(r, theme)) for r in rows]) for c in columns]
    out.append(f"{'ID':<{width}}" + "".join(f"  {c.fit(c.title, w)}"
                                             for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        out.append(f"{r['id']:<{width}}" + "".join(
            f"  {c.fit(c.cell(r, theme), w)}" for c, w in zip(columns, widths, strict=True)))
    return "\n".join(safe(line) for line in out)


###############################################################################
# main
###############################################################################

class UserError(Exception):
    """Something the user can fix; main() prints it without a traceback."""


Entry = EngineSocket | ClusterEntry


def socket_paths(entries: Sequence[Entry]) -> list[str]:
    """Every engine socket of ``entries``: a cluster's, each of its engines'."""
    return [e.path for entry in entries
            for e in (entry.engines if isinstance(entry, ClusterEntry) else [entry])]


def choose_socket(args: argparse.Namespace) -> tuple[str, str | None, list[Entry]]:
    """The socket to open and the program name to follow; or, when several engines
    run or those found are a cluster's, the entries to pick from (a cluster's
    engines are one entry)."""
    dirs = None
    if args.socket:
        path = os.path.abspath(args.socket)
        if not os.path.exists(path):
            raise UserError(f"no socket at {path}: is the engine running with "
                            f"Engine(inspector={args.socket!r})? Or leave the path out to "
                            f"find running engines")
        if not os.path.isdir(path):
            return path, None, []
        dirs = [path]               # a cluster's inspector=DIR: the engines in it
    problems: list[str] = []
    engines = find_engines(dirs, problems=problems)
    if not engines:
        skipped = "".join(f"\n  skipped: {safe(p)}" for p in problems)
        raise UserError(f"no running engine found in {' or '.join(dirs or socket_dirs())}: "
                        f"{START_ONE}{skipped}")
    probe_clusters(engines)
    entries = group_clusters(engines)
    if len(entries) == 1 and isinstance(entries[0], EngineSocket):
        return engines[0].path, engines[0].program, []
    return "", None, entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Live view of a running backstage engine (Engine(inspector=True)).")
    parser.add_argument("socket", nargs="?", help="the engine's socket; found when left out")
    parser.add_argument("--once", action="store_true",
                        help="print one snapshot as plain text and exit")
    parser.add_argument("--sort", choices=SORTS, default="msgs/s", help="the first sort order")
    parser.add_argument("--max-line-mb", type=int, default=MAX_LINE >> 20,
                        help="drop (and reconnect on) a feed line longer than this many MiB")
    args = parser.parse_args(argv)
    max_line = max(args.max_line_mb, 1) << 20
    try:
        path, program, several = choose_socket(args)
        chosen: Entry | bool | None = several[0] if len(several) == 1 else None
        if args.once:
            if isinstance(chosen, ClusterEntry):
                print(format_cluster_once(chosen, max_line))
                return 0
            if several:
                raise UserError("several engines are running; pass one socket:\n  " +
                                "\n  ".join(map(safe, socket_paths(several))))
            try:
                print(format_once(read_one_snapshot(path, max_line=max_line), args.sort))
            except OSError as exc:
                raise UserError(f"cannot read the feed at {path}: {exc}; is the engine "
                                f"still running?") from None
            return 0
        locale.setlocale(locale.LC_ALL, "")
        os.environ.setdefault("ESCDELAY", "25")      # Esc answers at once
        if len(several) > 1:
            chosen = pick_with_curses_menu(several)
            if chosen is True:
                chosen = curses.wrapper(run_picker, several)
        if isinstance(chosen, ClusterEntry):
            curses.wrapper(run_cluster, chosen, args.sort, max_line)
            return 0
        if several:
            if not isinstance(chosen, EngineSocket):
                return 0
            path, program = chosen.path, chosen.program
        connection = Connection(path, program, max_line)
        if not connection.connect():
            raise UserError(connection.problem or
                            f"cannot connect to {path}: the engine has exited or does not "
                            f"serve this socket; {START_ONE}")
        curses.wrapper(run_inspector, connection, args.sort)
        return 0
    except KeyboardInterrupt:
        return 0
    except UserError as exc:
        text = "\n".join(safe(line) for line in str(exc).split("\n"))
        print(f"inspector: {text}", file=sys.stderr)
        return 1
    except Exception as exc:   # never a traceback for the user
        print(f"inspector: unexpected {type(exc).__name__}: {safe(str(exc))}; run with "
              f"PYTHONDEVMODE=1 to see where, and please report it", file=sys.stderr)
        if os.environ.get("PYTHONDEVMODE"):
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
