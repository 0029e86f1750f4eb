"""The Loop contract, checked on every backend's Loop."""

import socket
import threading

import pytest

from backstage import make_loop


@pytest.fixture
def loop(backend):
    lp = make_loop(backend)
    yield lp
    lp.close()


def test_call_soon_runs_callbacks_in_order(loop):
    got = []

    loop.call_soon(got.append, 1)
    loop.call_soon(got.append, 2)
    loop.call_soon(loop.stop)
    loop.run()

    assert got == [1, 2]


def test_call_later_runs_timers_in_time_order_and_skips_cancelled_ones(loop):
    got = []

    loop.call_later(0.03, got.append, "late")
    loop.call_later(0.01, got.append, "early")
    loop.call_later(0.02, got.append, "cancelled").cancel()
    loop.call_later(0.04, loop.stop)
    loop.run()

    assert got == ["early", "late"]


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop):
    got = []
    threading.Timer(0.05, lambda: loop.call_soon_threadsafe(
        lambda: (got.append(threading.get_ident()), loop.stop()))).start()

    loop.call_later(10, loop.stop)   # the loop sleeps until woken
    loop.run()

    assert got == [threading.get_ident()]


def test_a_reader_callback_runs_when_data_arrives_and_stops_after_removal(loop):
    a, b = socket.socketpair()
    got = []

    def on_readable():
        loop.stop()
        got.append(b.recv(100))
        got.append(loop.remove_reader(b))

    loop.add_reader(b, on_readable)
    loop.call_later(0.01, a.send, b"ping")
    loop.run()

    assert got == [b"ping", True]
    assert loop.remove_reader(b) is False
    a.close()
    b.close()


def test_a_writer_callback_runs_when_the_socket_can_be_written(loop):
    a, b = socket.socketpair()
    got = []

    def on_writable():
        got.append("writable")
        loop.remove_writer(a)
        loop.stop()

    loop.add_writer(a, on_writable)
    loop.run()

    assert got == ["writable"]
    a.close()
    b.close()


def test_stop_from_another_thread_ends_run(loop):
    loop.call_later(10, loop.stop)
    threading.Timer(0.05, loop.stop).start()

    loop.run()
