"""Hand-written asyncio: what a user writes without a framework.

One ``asyncio.Queue`` and one task per actor; every function takes ``loop``:
"asyncio" (the standard event loop) or "uvloop".
"""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc

from bench.common import InOrder, clock, rss_bytes, skynet_check


def _run(loop: str, main):
    if loop == "uvloop":
        import uvloop
        aio = uvloop.new_event_loop()
    else:
        aio = asyncio.new_event_loop()
    try:
        return aio.run_until_complete(main())
    finally:
        aio.close()


def burst(loop: str, n: int) -> dict:
    async def main():
        inbox = asyncio.Queue(n)
        count = 0

        async def actor():
            nonlocal count
            get = inbox.get
            for _ in range(n):
                await get()
                count += 1

        task = asyncio.create_task(actor())
        put = inbox.put_nowait
        t0 = clock()
        for i in range(n):
            put(i)
        await task
        return {"seconds": clock() - t0, "ops": n, "value": count}

    return _run(loop, main)


def ping_pong(loop: str, n: int) -> dict:
    async def main():
        queues = {"ping": asyncio.Queue(), "pong": asyncio.Queue()}
        last = []

        async def player(me, other):
            get = queues[me].get
            put = queues[other].put_nowait
            while True:
                value = await get()
                if value is None or value >= n:
                    last.append(value)
                    put(None)       # let the other one end too
                    return
                put(value + 1)

        tasks = [asyncio.create_task(player("ping", "pong")),
                 asyncio.create_task(player("pong", "ping"))]
        t0 = clock()
        queues["ping"].put_nowait(1)
        await asyncio.gather(*tasks)
        return {"seconds": clock() - t0, "ops": n, "value": max(v or 0 for v in last)}

    return _run(loop, main)


def fan_out(loop: str, messages: int, subscribers: int) -> dict:
    # Batch delivery: a subscriber awaits one message, then takes what else
    # is queued without awaiting (the fastest a hand-written queue reader goes).
    async def main():
        queues = [asyncio.Queue() for _ in range(subscribers)]
        counts = [0] * subscribers

        async def subscriber(k, inbox):
            count = 0
            get = inbox.get
            get_nowait = inbox.get_nowait
            while count < messages:
                await get()
                count += 1
                while not inbox.empty():
                    get_nowait()
                    count += 1
            counts[k] = count

        tasks = [asyncio.create_task(subscriber(k, q)) for k, q in enumerate(queues)]
        await asyncio.sleep(0)
        puts = [q.put_nowait for q in queues]
        t0 = clock()
        for i in range(messages):
            for put in puts:
                put(i)
        await asyncio.gather(*tasks)
        return {"seconds": clock() - t0, "ops": messages * subscribers, "value": sum(counts)}

    return _run(loop, main)


def ring(loop: str, actors: int, rounds: int) -> dict:
    async def main():
        queues = [asyncio.Queue() for _ in range(actors)]
        hops = [0] * actors

        async def node(k):
            get = queues[k].get
            put = queues[(k + 1) % actors].put_nowait
            count = 0
            while True:
                left = await get()
                if left == 0:
                    break
                count += 1
                put(left - 1 if left > 1 else 0)
                if left == 1:
                    break
            hops[k] = count
            # Tell the rest of the ring to end.
            put(0)

        tasks = [asyncio.create_task(node(k)) for k in range(actors)]
        t0 = clock()
        queues[0].put_nowait(actors * rounds)
        await asyncio.gather(*tasks)
        return {"seconds": clock() - t0, "ops": actors * rounds, "value": sum(hops)}

    return _run(loop, main)


def skynet(loop: str, leaves: int) -> dict:
    # The classic Python skynet: a task per node, gather() per parent.
    async def node(num, size):
        if size == 1:
            return num
        size //= 10
        create = asyncio.create_task
        results = await asyncio.gather(*[create(node(num + i * size, size)) for i in range(10)])
        return sum(results)

    async def main():
        skynet_check(leaves)
        t0 = clock()
        value = await node(0, leaves)
        return {"seconds": clock() - t0, "ops": leaves, "value": value}

    return _run(loop, main)


def spawn_stop(loop: str, n: int) -> dict:
    async def main():
        stopped = 0

        async def actor(inbox):
            nonlocal stopped
            while True:
                if await inbox.get() is None:
                    stopped += 1
                    return

        create = asyncio.create_task
        t0 = clock()
        inboxes = [asyncio.Queue() for _ in range(n)]
        tasks = [create(actor(q)) for q in inboxes]
        await asyncio.sleep(0)          # every task has started and waits on its queue
        t1 = clock()
        for q in inboxes:
            q.put_nowait(None)
        await asyncio.gather(*tasks)
        t2 = clock()
        return {"spawn_s": t1 - t0, "stop_s": t2 - t1, "ops": n, "value": stopped}

    return _run(loop, main)


def idle_memory(loop: str, n: int) -> dict:
    async def actor(inbox):
        while True:
            if await inbox.get() is None:
                return

    async def spawn_all():
        inboxes = {f"idle{i}": asyncio.Queue() for i in range(n)}
        tasks = [asyncio.create_task(actor(q)) for q in inboxes.values()]
        await asyncio.sleep(0)
        return inboxes, tasks

    async def stop_all(inboxes, tasks):
        for q in inboxes.values():
            q.put_nowait(None)
        await asyncio.gather(*tasks)

    async def main():
        gc.collect()
        rss0 = rss_bytes()
        inboxes, tasks = await spawn_all()
        gc.collect()
        rss = rss_bytes() - rss0
        alive = sum(not t.done() for t in tasks)
        await stop_all(inboxes, tasks)
        del inboxes, tasks
        gc.collect()
        tracemalloc.start()
        t0 = tracemalloc.get_traced_memory()[0]
        inboxes, tasks = await spawn_all()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - t0
        tracemalloc.stop()
        await stop_all(inboxes, tasks)
        return {"tm_bytes": traced, "rss_bytes": rss, "ops": n, "value": alive}

    return _run(loop, main)


def cross_thread(loop: str, threads: int, per_thread: int) -> dict:
    async def main():
        aio = asyncio.get_running_loop()
        inbox = asyncio.Queue()
        seen = InOrder(threads)
        total = threads * per_thread
        start = threading.Event()

        def feed(tid):
            call = aio.call_soon_threadsafe
            put = inbox.put_nowait
            start.wait()
            for i in range(per_thread):
                call(put, (tid, i))

        workers = [threading.Thread(target=feed, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        t0 = clock()
        start.set()
        get = inbox.get
        add = seen.add
        while seen.count < total:
            add(await get())
        seconds = clock() - t0
        for w in workers:
            w.join()
        return {"seconds": seconds, "ops": total, "value": seen.count if seen.ordered else -1}

    return _run(loop, main)


###############################################################################
# Round two (issue 16)
###############################################################################

def actor_burst(loop: str, n: int) -> dict:
    # A producer task puts n messages into the counter task's queue.
    async def main():
        inbox = asyncio.Queue()
        count = 0

        async def counter():
            nonlocal count
            get = inbox.get
            for _ in range(n):
                await get()
                count += 1

        async def producer():
            put = inbox.put_nowait
            for i in range(n):
                put(i)

        t0 = clock()
        await asyncio.gather(asyncio.create_task(counter()), asyncio.create_task(producer()))
        return {"seconds": clock() - t0, "ops": n, "value": count}

    return _run(loop, main)


def _drain(loop: str, producers: int, per_producer: int, consumers: int) -> dict:
    # Producer tasks put into consumer tasks' queues (round robin when there
    # are several); each consumer awaits its messages one by one.
    async def main():
        inboxes = [asyncio.Queue() for _ in range(consumers)]
        totals = [0] * consumers
        total = producers * per_producer
        # How many messages consumer k gets: i = k - p (mod consumers), per producer.
        quota = [sum(len(range((k - p) % consumers, per_producer, consumers))
                     for p in range(producers)) for k in range(consumers)]

        async def consumer(k):
            get = inboxes[k].get
            acc = 0
            for _ in range(quota[k]):
                m = await get()
                acc += m * m % 7
            totals[k] = acc

        async def producer(p):
            puts = [q.put_nowait for q in inboxes]
            if consumers == 1:
                put = puts[0]
                for i in range(per_producer):
                    put(i)
            else:
                for i in range(per_producer):
                    puts[(i + p) % consumers](i)

        t0 = clock()
        tasks = [asyncio.create_task(consumer(k)) for k in range(consumers)]
        tasks += [asyncio.create_task(producer(p)) for p in range(producers)]
        await asyncio.gather(*tasks)
        return {"seconds": clock() - t0, "ops": total, "value": sum(totals)}

    return _run(loop, main)


def many_to_one(loop: str, producers: int, per_producer: int) -> dict:
    return _drain(loop, producers, per_producer, 1)


def many_to_many(loop: str, producers: int, per_producer: int) -> dict:
    return _drain(loop, producers, per_producer, producers)


def create_stop(loop: str, n: int, children: bool) -> dict:
    # An actor is a task with a queue; it takes one message and returns.
    # Children: one parent task makes them in an asyncio.TaskGroup.
    async def main():
        stopped = 0

        async def actor(inbox):
            nonlocal stopped
            await inbox.get()
            stopped += 1

        def spawn_all(create):
            for _ in range(n):
                inbox = asyncio.Queue()
                create(actor(inbox))
                inbox.put_nowait(0)

        t0 = clock()
        if children:
            async def parent():
                async with asyncio.TaskGroup() as group:
                    spawn_all(group.create_task)
            await parent()
        else:
            tasks = []
            append, create = tasks.append, asyncio.create_task
            spawn_all(lambda coro: append(create(coro)))
            await asyncio.gather(*tasks)
        return {"seconds": clock() - t0, "ops": n, "value": stopped}

    return _run(loop, main)


def cross_thread_send(loop: str, n: int) -> dict:
    async def main():
        aio = asyncio.get_running_loop()
        inbox = asyncio.Queue()
        start = threading.Event()

        def feed():
            call = aio.call_soon_threadsafe
            put = inbox.put_nowait
            start.wait()
            for i in range(n):
                call(put, i)

        worker = threading.Thread(target=feed)
        worker.start()
        t0 = clock()
        start.set()
        get = inbox.get
        ordered = True
        for i in range(n):
            if await get() != i:
                ordered = False
        seconds = clock() - t0
        worker.join()
        return {"seconds": seconds, "ops": n, "value": n if ordered else -1}

    return _run(loop, main)


def cross_thread_ask(loop: str, n: int) -> dict:
    # The asker puts (message, concurrent future) with call_soon_threadsafe;
    # the actor task sets the result; the asker waits on the future.
    from concurrent.futures import Future

    if loop == "uvloop":
        import uvloop
        aio = uvloop.new_event_loop()
    else:
        aio = asyncio.new_event_loop()
    ready = threading.Event()
    inbox: list = []

    async def actor():
        queue = asyncio.Queue()
        inbox.append(queue)
        ready.set()
        while (item := await queue.get()) is not None:
            message, future = item
            future.set_result(message)

    runner = threading.Thread(target=aio.run_until_complete, args=(actor(),))
    runner.start()
    ready.wait()
    put = inbox[0].put_nowait
    call = aio.call_soon_threadsafe
    ok = 0
    try:
        t0 = clock()
        for i in range(n):
            future = Future()
            call(put, (i, future))
            ok += future.result(10) == i
        seconds = clock() - t0
    finally:
        call(put, None)
        runner.join()
        aio.close()
    return {"seconds": seconds, "ops": n, "value": ok}
