"""The inspector's cluster table: the engines of one backstage.Cluster as one entry,
a row per engine and the cluster's totals (fake feeds; tests/test_cluster_ray.py runs
it on a real cluster in tmux)."""

import curses

from test_inspector_ui import FakeConnection, FakeWindow, frame, row, snapshot

import inspector_curses as ui


def engine_socket(path, cluster=None):
    found = ui.EngineSocket(path)
    found.cluster = cluster
    return found


def member_snapshot(index, rows, pid, rate, sent, size=2, name="wc", waiting=0):
    snap = snapshot(rows, pid=pid, rate=rate)
    snap["engine"]["waiting"] = waiting
    snap["engine"]["cluster"] = {"name": name, "engine": index, "engines": size,
                                 "sent_to_other_engines": sent}
    return snap


def cluster_app(connected=(True, True)):
    engines = [engine_socket(f"/tmp/wc-{10 + i}.sock", {"name": "wc", "engine": i,
                                                         "engines": 2}) for i in (1, 0)]
    app = ui.ClusterApp(ui.ClusterEntry("wc", engines))
    feeds = {0: member_snapshot(0, [row("mapper-1", total=40), row("mapper-2", total=60)],
                                pid=10, rate=100.0, sent=70, waiting=2),
             1: member_snapshot(1, [row("reducer", total=70)], pid=11, rate=50.0, sent=0)}
    for m in app.members:
        m.connection = FakeConnection([feeds[m.index]], connected=connected[m.index])
    app.tick(0.0)
    return app, FakeWindow(20, 100)


def test_the_engines_of_one_cluster_are_one_entry_in_the_place_of_its_newest():
    lone = engine_socket("/tmp/demo-1.sock")
    a0 = engine_socket("/tmp/wc-2.sock", {"name": "wc", "engine": 0, "engines": 2})
    b0 = engine_socket("/tmp/other-3.sock", {"name": "other", "engine": 0, "engines": 1})
    a1 = engine_socket("/tmp/wc-4.sock", {"name": "wc", "engine": 1, "engines": 2})

    entries = ui.group_clusters([a1, lone, a0, b0])

    assert [type(e).__name__ for e in entries] == ["ClusterEntry", "EngineSocket",
                                                   "ClusterEntry"]
    assert [e.path for e in entries[0].engines] == [a0.path, a1.path]    # by engine number
    assert entries[0].label().startswith("cluster wc") and "2 of 2 engines" in entries[0].label()
    assert entries[1] is lone and [e.path for e in entries[2].engines] == [b0.path]


def test_the_cluster_table_has_a_row_per_engine_and_the_clusters_totals():
    app, window = cluster_app()

    lines = frame(app, window).splitlines()

    assert lines[0].strip() == "backstage inspector: cluster wc, 2 of 2 engines on this machine"
    assert lines[2].split()[:4] == ["ENGINE", "PID", "STATE", "ACTORS"]
    assert lines[3].split()[:8] == ["engine", "0", "10", "live", "2", "100", "100", "70"]
    assert lines[4].split()[:8] == ["engine", "1", "11", "live", "1", "50.0", "70", "0"]
    assert lines[5].split()[:8] == ["cluster", "2", "live", "3", "150", "170", "70", "6"]
    assert lines[2].split()[-1] == "WAITING"                # actors held or waiting, per engine
    assert [lines[i].split()[-1] for i in (3, 4, 5)] == ["2", "0", "2"]
    assert "Enter opens the engine" in lines[-1]


def test_an_engine_whose_feed_ended_shows_as_gone_and_its_rate_leaves_the_total():
    app, window = cluster_app(connected=(True, False))

    lines = frame(app, window).splitlines()

    assert lines[4].split()[:5] == ["engine", "1", "11", "gone", "1"]
    assert lines[5].split()[:5] == ["cluster", "1", "live", "2", "100"]


def test_enter_opens_an_engines_view_whose_q_comes_back_and_q_then_quits():
    app, window = cluster_app()

    app.press(curses.KEY_DOWN)
    app.press(10)
    engine_view = frame(app, window)
    assert app.press(ord("q")) is True
    back = frame(app, window)

    assert "reducer" in engine_view and "mapper-1" not in engine_view
    assert back.splitlines()[0].strip().startswith("backstage inspector: cluster wc")
    assert app.press(ord("q")) is False


def test_a_malformed_cluster_field_is_ignored():
    snap = snapshot([])
    snap["engine"]["cluster"] = {"name": 3, "engine": "x"}

    assert ui.clean_snapshot(snap)["engine"]["cluster"] is None


def test_an_engine_whose_feed_is_not_on_this_machine_has_a_row_not_here():
    # Lost before the inspector started (its socket's process is gone), or on
    # another machine: it was left out, and only the heading's count told.
    engines = [engine_socket(f"/tmp/wc-{10 + i}.sock", {"name": "wc", "engine": i,
                                                         "engines": 3}) for i in (0, 1)]
    app = ui.ClusterApp(ui.ClusterEntry("wc", engines))
    for m in app.members:
        m.connection = FakeConnection([member_snapshot(m.index, [row("a", total=1)],
                                                       pid=10 + m.index, rate=1.0, sent=0,
                                                       size=3)])
    app.tick(0.0)

    lines = frame(app, FakeWindow(20, 100)).splitlines()

    assert lines[0].strip() == "backstage inspector: cluster wc, 2 of 3 engines on this machine"
    assert [lines[i].split()[:4] for i in (3, 4, 5)] == [
        ["engine", "0", "10", "live"], ["engine", "1", "11", "live"],
        ["engine", "2", "-", "not"]]
    assert lines[5].split()[4] == "here" and lines[6].split()[0] == "cluster"
