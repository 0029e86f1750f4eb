"""The README's quick start: two actors, a subscription, publications and a send."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # a checkout

import backstage  # noqa: E402
from backstage import MessageType  # noqa: E402


class MyActor:
    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx

    def receive(self, envelope: backstage.Envelope) -> None:
        if envelope.message_type is MessageType.PUBLISH:
            print(f"{self.ctx.actor_id} got {envelope.message!r} "
                  f"on {envelope.sender_id}/{envelope.topic}")
        else:
            print(f"{self.ctx.actor_id} got {envelope.message!r} directly")

    def deinit(self) -> None:
        print(f"{self.ctx.actor_id} stopped")


def main() -> None:
    with backstage.Engine() as engine:
        publisher = engine.spawn_actor(MyActor, id="publisher", capacity=1024)
        subscriber = engine.spawn_actor(MyActor, id="subscriber", capacity=1024)

        subscriber.ctx.subscribe_to_actor("publisher")               # the "default" topic
        subscriber.ctx.subscribe_to_actor_topic("publisher", "news")

        publisher.ctx.publish("Hello, subscribers!")
        publisher.ctx.publish_to_topic("news", "Breaking news!")
        engine.send("subscriber", "Direct message")

        engine.run()                  # returns when every message is handled


if __name__ == "__main__":
    main()
