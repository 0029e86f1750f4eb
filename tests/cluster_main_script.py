"""Run as a program by tests/test_cluster_ray.py: a message class and an actor
class of the driver's own script (its __main__) travel to another engine.
Prints what the actor got."""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backstage  # noqa: E402


@dataclasses.dataclass
class Job:
    n: int


class Keeper:
    def __init__(self, ctx):
        self.ctx = ctx
        self.got = []

    def receive(self, envelope):
        if envelope.message == "get":
            envelope.reply(self.got)
        else:
            self.got.append(envelope.message)


if __name__ == "__main__":
    with backstage.Cluster("ray", engines=2,
                           ray_init={"object_store_memory": 80 * 1024 * 1024}) as cluster:
        cluster.spawn_actor(Keeper, "keeper", pin=1)
        cluster.send("keeper", Job(1))
        cluster.send("keeper", [Job(2), Job(3)])
        print("got", cluster.ask("keeper", "get").result(30))
        print("dead letters", len(cluster.dead_letters()))
