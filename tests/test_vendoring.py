"""backstage.py works alone, copied into another project."""

import shutil
import subprocess
import sys
import textwrap

from conftest import ROOT

QUICK = textwrap.dedent("""
    import backstage
    got = []
    class Echo:
        def __init__(self, ctx):
            self.ctx = ctx
        def receive(self, env):
            got.append(env.message)
    e = backstage.Engine()
    e.spawn_actor(Echo, id="echo", capacity=8)
    for i in range(100):
        e.send("echo", i)
    e.run()
    assert got == list(range(100)), got[:5]
    try:
        backstage.Engine(backend="asyncio")
    except ImportError as exc:
        print("asyncio:", exc)
    print("ok")
""")


def test_backstage_copied_alone_runs_and_explains_missing_backends(tmp_path):
    shutil.copy(ROOT / "backstage.py", tmp_path / "backstage.py")

    out = subprocess.run([sys.executable, "-E", "-s", "-c", QUICK], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)

    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "ok"
    assert "copy the backends/ folder next to backstage.py" in out.stdout


def test_backstage_imports_only_the_standard_library():
    import ast

    tree = ast.parse((ROOT / "backstage.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])

    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# A user's package with backstage vendored in pkg/_vendor/: its program imports
# backstage relatively, and nothing named backstage or backends is on sys.path.
VENDORED_APP = textwrap.dedent("""
    import asyncio
    import sys

    from ._vendor import backstage

    BACKEND = sys.argv[1]

    class Echo:
        def __init__(self, ctx: backstage.Context) -> None:
            self.ctx = ctx
            self.got = []
        def receive(self, envelope: backstage.Envelope) -> None:
            if envelope.message_type is backstage.MessageType.PUBLISH:
                print(f"{self.ctx.actor_id} got {envelope.message!r} on {envelope.topic}")
            else:
                envelope.reply(envelope.message * 2)

    def quick_start() -> None:
        with backstage.Engine(backend=BACKEND) as engine:
            publisher = engine.spawn_actor(Echo, id="publisher")
            subscriber = engine.spawn_actor(Echo, id="subscriber")
            subscriber.ctx.subscribe_to_actor_topic("publisher", "news")
            publisher.ctx.publish_to_topic("news", "Breaking news!")
            engine.run()
            print("loop:", type(engine._loop).__module__)

    async def asyncio_program() -> None:
        engine = backstage.Engine(backend=BACKEND)     # shares the running loop
        engine.spawn_actor(Echo, id="doubler")
        actors = asyncio.create_task(engine.run_async())
        print("asked:", await asyncio.wrap_future(engine.ask("doubler", 21)))
        engine.stop()
        await actors
        engine.close()

    quick_start()
    if BACKEND == "asyncio":
        asyncio.run(asyncio_program())
    elif BACKEND == "uvloop":
        import uvloop
        uvloop.run(asyncio_program())
    print("top-level:", sorted(name for name in sys.modules
                               if name.split(".")[0] in ("backstage", "backends")))
""")


def vendor(tmp_path, with_backends):
    vendored = tmp_path / "pkg" / "_vendor"
    vendored.mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (vendored / "__init__.py").write_text("")
    shutil.copy(ROOT / "backstage.py", vendored / "backstage.py")
    if with_backends:
        shutil.copytree(ROOT / "backends", vendored / "backends",
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pkg" / "app.py").write_text(VENDORED_APP)


def run_app(tmp_path, backend):
    return subprocess.run([sys.executable, "-E", "-s", "-m", "pkg.app", backend], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_backstage_vendored_with_its_backends_in_a_package_runs_on_every_backend(tmp_path,
                                                                                 backend):
    vendor(tmp_path, with_backends=True)

    out = run_app(tmp_path, backend)

    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "subscriber got 'Breaking news!' on news"
    expected_loop = "pkg._vendor.backstage" if backend == "selectors" else \
        f"pkg._vendor.backends.{backend}_backend"
    assert lines[1] == f"loop: {expected_loop}"
    if backend != "selectors":
        assert lines[2] == "asked: 42"
    assert lines[-1] == "top-level: []"


def test_backstage_vendored_alone_in_a_package_runs_and_explains_missing_backends(tmp_path):
    vendor(tmp_path, with_backends=False)

    alone = run_app(tmp_path, "selectors")
    asyncio_ = run_app(tmp_path, "asyncio")

    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines()[-1] == "top-level: []"
    assert asyncio_.returncode == 1
    assert "copy the backends/ folder next to backstage.py" in asyncio_.stderr
