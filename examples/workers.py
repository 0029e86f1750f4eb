"""A supervisor actor with child workers, fed from other threads, reporting on a timer."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # a checkout

import backstage  # noqa: E402


class Worker:
    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.done = 0

    def receive(self, envelope: backstage.Envelope) -> None:
        n = envelope.message
        self.done += 1
        self.ctx.send("boss", (self.ctx.actor_id, n * n))


class Boss:
    """Spawns workers as children, hands out jobs round-robin, sums the results."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.workers = [ctx.spawn_child_actor(Worker, id=f"worker-{i}").ctx.actor_id
                        for i in range(4)]
        self.next = 0
        self.total = 0
        self.results = 0
        self.report = ctx.run_recurring(0.01, self.print_progress)

    def receive(self, envelope: backstage.Envelope) -> None:
        if envelope.sender_id is None:            # a job from outside
            self.ctx.send(self.workers[self.next], envelope.message)
            self.next = (self.next + 1) % len(self.workers)
        else:                                      # a result from a worker
            _, square = envelope.message
            self.total += square
            self.results += 1
            if self.results == 10_000:
                self.print_progress()
                self.ctx.engine.stop()

    def print_progress(self) -> None:
        print(f"{self.results} results, sum of squares so far {self.total}")


def main() -> None:
    engine = backstage.Engine()
    engine.spawn_actor(Boss, id="boss")

    def feed(start: int) -> None:                               # other threads send safely
        for n in range(start, 10_000, 2):
            engine.send("boss", n)
            if n % 400 < 2:
                time.sleep(0.002)                   # jobs arrive over time: reports show

    feeders = [threading.Thread(target=feed, args=(s,)) for s in (0, 1)]
    for t in feeders:
        t.start()
    engine.run_forever()                           # until the boss calls stop()
    for t in feeders:
        t.join()
    print("children of boss:", engine.get_actor("boss").ctx.children)
    engine.close()                                 # workers stop first, then the boss


if __name__ == "__main__":
    main()
