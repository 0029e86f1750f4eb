"""A fault soak: a tree of 1,000 actors, 100,000 messages, faults and pills."""

import random
import threading

from backstage import Engine, OneForOne

FOREVER = OneForOne(max_restarts=10**9, within_s=1)
stats = {"delivered": 0, "faults": 0}


class Leaf:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        if envelope.message == "ping":
            envelope.reply("pong")
            return
        if envelope.message % 10 == 7:          # a tenth of the receives fail
            stats["faults"] += 1
            raise ValueError(f"fault on {envelope.message}")
        stats["delivered"] += 1


class Branch:
    supervisor = FOREVER

    def __init__(self, ctx):
        for i in range(99):
            ctx.spawn_child_actor(Leaf, id=f"{ctx.actor_id}/{i}")

    def receive(self, envelope):
        pass


class Root:
    supervisor = FOREVER

    def __init__(self, ctx):
        for i in range(10):
            ctx.spawn_child_actor(Branch, id=f"b{i}")

    def receive(self, envelope):
        pass


def test_every_message_is_delivered_or_dead_lettered_and_restarts_match_faults(backend):
    stats.update(delivered=0, faults=0)
    rng = random.Random(1234)
    engine = Engine(backend=backend, supervisor=FOREVER)
    engine.spawn_actor(Root, id="root")
    leaves = [f"b{b}/{i}" for b in range(10) for i in range(99)]
    assert len(engine.actor_ids) == 1 + 10 + 990
    pill_at = set(rng.sample(range(100_000), 30))
    pilled = set()

    sent = 0
    for n in range(100_000):
        target = rng.choice(leaves)
        engine.send(target, rng.randrange(10) * 10 + (7 if rng.random() < 0.1 else 1))
        sent += 1
        if n in pill_at:
            victim = rng.choice([leaf for leaf in leaves if leaf not in pilled])
            pilled.add(victim)
            engine.poison_pill(victim)
        if n % 10_000 == 0:
            engine.run()
    engine.run()

    assert stats["delivered"] + engine.dead_letter_count == sent
    assert engine.restart_count == stats["faults"]
    assert stats["faults"] > 5_000
    assert len(engine.actor_ids) == 1 + 10 + 990 - len(pilled)

    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        alive = next(leaf for leaf in leaves if leaf not in pilled)
        assert engine.ask(alive, "ping", timeout=5).result(timeout=1) == "pong"
    finally:
        engine.stop()
        runner.join(10)
        engine.close()
