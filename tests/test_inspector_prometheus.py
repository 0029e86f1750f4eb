"""inspector_prometheus.py: real scrapes over HTTP, read back with prometheus_client's parser;
and, where the prometheus server is installed, a real Prometheus scraping it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest
from conftest import ROOT, Recorder

from backstage import Engine

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import inspector_prometheus as exporter_module  # noqa: E402

DEADLINE = 30.0


@pytest.fixture
def sockdir():
    path = tempfile.mkdtemp(prefix="bsp-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def scrape(url):
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text, name):
    """{frozenset(labels): value} of the samples called ``name``."""
    return {frozenset(s.labels.items()): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}


def wait_for(predicate, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def serve(backend, sockdir):
    """An engine with actors alpha (100 messages) and beta, served on a thread."""
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "e.sock"),
                    inspector_interval=0.05)
    engine.spawn_actor(Recorder, id="alpha")
    engine.spawn_actor(Recorder, id="beta")
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    for n in range(100):
        engine.send("alpha", n)
    yield engine
    engine.close()
    thread.join(DEADLINE)


@pytest.fixture
def running(backend, sockdir):
    yield from serve(backend, sockdir)


@pytest.fixture
def running_once(sockdir):
    """The same, on one backend: the exporter does not care which."""
    yield from serve("selectors", sockdir)


def test_a_scrape_of_a_running_engine_reads_back_with_the_librarys_parser(running):
    exporter = exporter_module.Exporter(running.inspector_path, 0)
    try:
        key = frozenset({"actor": "alpha", "type": "Recorder"}.items())
        text = wait_for(lambda: (t := scrape(exporter.url)) and
                        samples(t, "backstage_actor_messages_total").get(key) == 100 and t,
                        "alpha's 100 messages in a scrape")
    finally:
        exporter.close()

    found = families(text)
    assert found["backstage_actor_messages"].type == "counter"
    assert found["backstage_actor_inbox_length"].type == "gauge"
    assert found["backstage_messages"].type == "counter"
    assert samples(text, "backstage_messages_total")[frozenset()] >= 100
    assert samples(text, "backstage_actors")[frozenset()] == 2
    assert samples(text, "backstage_actors_waiting")[frozenset()] == 0
    assert samples(text, "backstage_feed_up")[frozenset()] == 1
    assert samples(text, "backstage_actor_inbox_length")[key] == 0
    assert samples(text, "backstage_type_actors")[frozenset({"type": "Recorder"}.items())] == 2
    info = samples(text, "backstage_engine_info")
    assert [dict(k)["pid"] for k in info] == [str(os.getpid())]


# -- a feed written by the test: every field of issue 14 ----------------------

def full_snapshot(rows, **engine):
    return {"v": 1, "type": "snapshot", "seq": 1, "time": 100.0, "interval": 0.5,
            "engine": {"pid": 4242, "program": "app", "backend": "selectors", "uptime": 10.0,
                       "actors": len(rows), "messages_total": 1000, "messages_per_s": 10.0,
                       "messages_per_s_avg": 10.0, "dead_letters": 42, "restarts": 7,
                       "failures": 9, "receive_s": 3.5, "busy_share": 0.25,
                       "dead_letters_by_reason": {"stopped": 40, "unknown id": 2},
                       "waiting": 1, **engine},
            "actors": rows}


def actor(actor_id, type_="Worker", total=0, receive_s=0.0, ms=0.0, rate=0.0, **extra):
    return {"id": actor_id, "type": type_, "parent": None, "state": "running", "inbox": 3,
            "capacity": 1000, "overflow": "drop", "messages_total": total,
            "messages_per_s": rate, "last_message_at": None, "subscribers": 0,
            "subscriptions": [], "restarts": 7, "failures": 9, "dead_letters": 28,
            "receive_s": receive_s, "receive_ms_per_s": ms, "busy_share": 0.1, "inbox_hwm": 900,
            **extra}


class FeedServer:
    """A Unix socket that sends each client the lines it is given."""

    def __init__(self, path, lines):
        self.lines = lines
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(4)
        self.path = path
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            for line in self.lines:
                conn.sendall(json.dumps(line).encode() + b"\n")
            self.conn = conn

    def close(self):
        self.server.close()


def test_every_feed_figure_becomes_a_counter_or_a_gauge(sockdir):
    stuck = {"v": 1, "type": "stuck", "time": 100.0, "since": 95.0, "for_s": 5.0,
             "actor": "slow", "callback": "receive of slow"}
    server = FeedServer(os.path.join(sockdir, "f.sock"),
                        [full_snapshot([actor("slow", "Slow", 10, 30.0, 900.0)]), stuck])
    exporter = exporter_module.Exporter(server.path, 0)
    try:
        text = wait_for(lambda: (t := scrape(exporter.url)) and
                        samples(t, "backstage_stuck_seconds").get(frozenset(), 0) >= 5 and t,
                        "the stuck line in a scrape")
    finally:
        exporter.close()
        server.close()

    key = frozenset({"actor": "slow", "type": "Slow"}.items())
    found = families(text)
    assert samples(text, "backstage_actor_receive_seconds_total")[key] == 30.0
    assert samples(text, "backstage_actor_restarts_total")[key] == 7
    assert samples(text, "backstage_actor_failures_total")[key] == 9
    assert samples(text, "backstage_actor_dead_letters_total")[key] == 28
    assert samples(text, "backstage_actor_inbox_high_water")[key] == 900
    assert samples(text, "backstage_actor_inbox_capacity")[key] == 1000
    assert found["backstage_actor_receive_seconds"].type == "counter"
    assert samples(text, "backstage_receive_seconds_total")[frozenset()] == 3.5
    assert samples(text, "backstage_busy_ratio")[frozenset()] == 0.25
    assert samples(text, "backstage_actors_waiting")[frozenset()] == 1
    assert samples(text, "backstage_dead_letters_by_reason_total") == {
        frozenset({"reason": "stopped"}.items()): 40,
        frozenset({"reason": "unknown id"}.items()): 2}
    assert samples(text, "backstage_restarts_total")[frozenset()] == 7


def test_label_cardinality_stays_bounded_with_100k_actors():
    state = exporter_module.State(top=50, max_types=20)
    rows = [actor(f"w-{n}", f"T{n % 500}", total=n, ms=n % 1000, rate=1.0)
            for n in range(100_000)]
    state.receive(full_snapshot(rows), 0.0)
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(exporter_module.FeedCollector(state))

    text = prometheus_client.generate_latest(registry).decode()

    per_actor = samples(text, "backstage_actor_messages_total")
    per_type = samples(text, "backstage_type_actors")
    assert len(per_actor) == 50
    assert {dict(k)["actor"] for k in per_actor} >= {"w-999", "w-1999"}     # the busiest
    assert len(per_type) == 20 and frozenset({"type": "other"}.items()) in per_type
    assert sum(per_type.values()) == 100_000
    assert samples(text, "backstage_actors_not_exported")[frozenset()] == 99_950
    assert len(text.splitlines()) < 2000


def test_type_counters_never_go_down_when_actors_stop():
    state = exporter_module.State()
    state.receive(full_snapshot([actor("a", total=100), actor("b", total=50)]), 0.0)
    state.receive(full_snapshot([actor("b", total=60)]), 1.0)
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(exporter_module.FeedCollector(state))

    text = prometheus_client.generate_latest(registry).decode()

    assert samples(text, "backstage_type_messages_total") == {
        frozenset({"type": "Worker"}.items()): 160}


def test_label_values_are_safe_and_short():
    state = exporter_module.State()
    state.receive(full_snapshot([actor("\x1b[31m" + "x" * 500, "T\ud800", total=1)]), 0.0)
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(exporter_module.FeedCollector(state))

    text = prometheus_client.generate_latest(registry).decode()

    (labels,) = samples(text, "backstage_actor_messages_total")
    assert dict(labels)["actor"] == "?[31m" + "x" * 115
    assert dict(labels)["type"] == "T?"


def test_the_command_line_serves_on_loopback_and_says_where(running_once):
    proc = subprocess.Popen([sys.executable, str(ROOT / "inspector_prometheus.py"),
                             running_once.inspector_path, "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        text = wait_for(lambda: (t := scrape(url)) and "backstage_actor_messages_total" in t
                        and t, "a scrape")
    finally:
        proc.terminate()
        proc.wait(DEADLINE)
        proc.stderr.close()

    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    assert 'actor="alpha"' in text


def test_without_prometheus_client_it_says_how_to_install_it(sockdir):
    code = ("import sys; sys.modules['prometheus_client'] = None; "
            "import inspector_prometheus as m; sys.exit(m.main([sys.argv[1], '--port', '0']))")
    server = FeedServer(os.path.join(sockdir, "f.sock"), [])
    try:
        out = subprocess.run([sys.executable, "-c", code, server.path], cwd=ROOT,
                             capture_output=True, text=True, timeout=DEADLINE)
    finally:
        server.close()

    assert out.returncode == 1
    assert out.stderr == ("backstage-prometheus: inspector_prometheus.py needs prometheus_client:"
                          " pip install prometheus_client (or pip install "
                          "'backstage-actors[prometheus]')\n")


# -- a real Prometheus ---------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="the prometheus server is not installed (Debian: apt-get install "
                           "prometheus; .ci/run tries)")
def test_a_real_prometheus_scrapes_the_exporter_and_answers_a_query(running_once, sockdir):
    exporter = exporter_module.Exporter(running_once.inspector_path, 0)
    web = free_port()
    config = os.path.join(sockdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n"
                "scrape_configs:\n  - job_name: backstage\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{exporter.port}']\n")
    server = subprocess.Popen(["prometheus", f"--config.file={config}",
                               f"--storage.tsdb.path={os.path.join(sockdir, 'data')}",
                               f"--web.listen-address=127.0.0.1:{web}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    query = urllib.parse.quote('backstage_actor_messages_total{actor="alpha"}')

    def answer():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?query={query}",
                                        timeout=5) as response:
                body = json.load(response)
        except OSError:
            return None
        return body["data"]["result"] if body.get("status") == "success" else None

    try:
        result = wait_for(answer, "Prometheus to scrape the exporter", timeout=90)
    finally:
        server.terminate()
        try:
            server.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        exporter.close()

    assert result[0]["metric"]["job"] == "backstage"
    assert result[0]["metric"]["type"] == "Recorder"
    assert float(result[0]["value"][1]) == 100
