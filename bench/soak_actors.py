"""The fault soak's actors, shared by bench/edges.py (the figures) and
tests/test_soak.py (the check at a smaller size).

A tree: ``root`` supervises ten branches ``b0`` .. ``b9``, each of which
supervises 99 leaves ``bN/0`` .. ``bN/98`` (1,001 actors).  A leaf's receive
fails on a number ending in 7 (its parent restarts it) and answers three kinds
of ask: "ask" (answered), "ask-fail" (fails in receive) and "ask-drop"
(handled, never answered).
"""

from __future__ import annotations

from typing import Any

from backstage import Context, Envelope, OneForOne

FOREVER = OneForOne(max_restarts=10**9, within_s=1)

# The leaves' ids, branch by branch.
LEAVES = [f"b{b}/{i}" for b in range(10) for i in range(99)]


class Leaf:
    delivered = 0       # messages receive handled (set back to 0 before a run)
    faults = 0          # receives that failed, each a restart

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def receive(self, envelope: Envelope) -> None:
        message: Any = envelope.message
        if message == "ask":
            envelope.reply("answer")
        elif message == "ask-fail" or (type(message) is int and message % 10 == 7):
            type(self).faults += 1
            raise ValueError(f"fault on {message!r}")  # a dead letter; its ask fails
        # "ask-drop": handled, never answered, so the ask fails
        type(self).delivered += 1


class _Node:
    """A branch or the root: supervises its children, forever; receives nothing."""

    supervisor = FOREVER

    def receive(self, envelope: Envelope) -> None:
        pass


class Branch(_Node):
    def __init__(self, ctx: Context) -> None:
        for i in range(99):
            ctx.spawn_child_actor(Leaf, id=f"{ctx.actor_id}/{i}")


class Root(_Node):
    def __init__(self, ctx: Context) -> None:
        for i in range(10):
            ctx.spawn_child_actor(Branch, id=f"b{i}")
