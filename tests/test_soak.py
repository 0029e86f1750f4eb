"""A fault soak: a tree of 1,000 actors, 100,000 messages, faults and pills."""

import random
import threading

from backstage import Engine
from bench.soak_actors import FOREVER, LEAVES, Leaf, Root  # bench/edges.py's soak too


def test_every_message_is_delivered_or_dead_lettered_and_restarts_match_faults(backend):
    Leaf.delivered = Leaf.faults = 0
    rng = random.Random(1234)
    engine = Engine(backend=backend, supervisor=FOREVER)
    engine.spawn_actor(Root, id="root")
    leaves = LEAVES
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

    assert Leaf.delivered + engine.dead_letter_count == sent
    assert engine.restart_count == Leaf.faults
    assert Leaf.faults > 5_000
    assert len(engine.actor_ids) == 1 + 10 + 990 - len(pilled)

    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        alive = next(leaf for leaf in leaves if leaf not in pilled)
        assert engine.ask(alive, "ask", timeout=5).result(timeout=1) == "answer"
    finally:
        engine.stop()
        runner.join(10)
        engine.close()
