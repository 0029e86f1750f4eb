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
