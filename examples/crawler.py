"""A web crawler as actors: a pool of fetchers, blocking I/O in threads, async handlers.

It starts a small web site on 127.0.0.1 (``http.server`` in a thread of its own;
every page takes ``--delay`` seconds to serve, as a slow site would), then
crawls it from its front page:

- "crawler" (a plain ``receive``): keeps the pages seen and the fetches in
  flight, and asks the pool for each new page; the answers come back as
  future callbacks, which run on the engine thread between messages.
- "fetchers": ``engine.spawn_pool(Fetcher, "fetchers", 8)``: eight routees
  behind one id.  Each ``Fetcher`` has an ``async def receive`` that awaits
  ``ctx.run_in_thread(fetch, url)`` (urllib blocks; the engine's thread pool
  takes that) and replies with the links it found.  A routee handles one page
  at a time; eight of them fetch eight pages at once.
- "ticker": a recurring timer every 10 ms.  It keeps ticking while the crawl
  runs, because no actor ever blocks the engine's thread.

    python examples/crawler.py [--pages 40] [--fetchers 8] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import http.server
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backstage  # noqa: E402

LINK = re.compile(r'href="([^"]+)"')


###############################################################################
# The site: a few dozen linked pages, each slow to serve
###############################################################################

def page_links(page: int, pages: int) -> list[int]:
    """The pages that page ``page`` links to: the next one, and two further off."""
    return sorted({(page + 1) % pages, (page * 3 + 1) % pages, (page * 7 + 2) % pages})


def start_site(pages: int, delay: float) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``pages`` linked pages on a free loopback port; returns the server and
    the URL of its first page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:          # noqa: N802 (the name http.server calls)
            match = re.fullmatch(r"/page/(\d+)", self.path)
            page = int(match.group(1)) if match else -1
            if not 0 <= page < pages:
                self.send_error(404)
                return
            time.sleep(delay)               # a slow site: the reason to fetch in threads
            links = "".join(f'<li><a href="/page/{n}">page {n}</a></li>'
                            for n in page_links(page, pages))
            body = f"<html><body><h1>page {page}</h1><ul>{links}</ul></body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass                            # quiet: the crawler prints what matters

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="site", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/page/0"


def fetch(url: str) -> str:
    """Download ``url`` (blocking: it runs on the engine's thread pool, never on its loop)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


###############################################################################
# The actors
###############################################################################

class Fetcher:
    """A pool routee: fetches one page at a time and answers with its links."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx

    async def receive(self, envelope: backstage.Envelope) -> None:
        url = envelope.message
        html = await self.ctx.run_in_thread(fetch, url)
        envelope.reply([urllib.parse.urljoin(url, link) for link in LINK.findall(html)])


class Crawler:
    """Asks the pool for each page not seen yet; stops everything when none is in flight."""

    def __init__(self, ctx: backstage.Context, root: str) -> None:
        self.ctx = ctx
        self.root = root
        self.seen: set[str] = set()
        self.links = 0
        self.failed: list[str] = []
        self.in_flight = 0

    def receive(self, envelope: backstage.Envelope) -> None:
        if envelope.message == "start":
            self.visit(self.root)

    def visit(self, url: str) -> None:
        self.seen.add(url)
        self.in_flight += 1
        future = self.ctx.ask("fetchers", url, timeout=10.0)
        future.add_done_callback(lambda done: self.fetched(url, done))

    def fetched(self, url: str, done: Future[Any]) -> None:
        # A future callback: on the engine thread, between two messages.
        self.in_flight -= 1
        if done.exception() is not None:
            self.failed.append(url)
        else:
            for link in done.result():
                self.links += 1
                if link not in self.seen:
                    self.visit(link)
        if self.in_flight == 0:
            self.ctx.send("ticker", "stop")
            self.ctx.engine.poison_pill("fetchers")
            self.ctx.shutdown()


class Ticker:
    """Counts the ticks of a 10 ms timer until told to stop."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.ticks = 0
        ctx.run_recurring(0.01, self.tick)

    def tick(self) -> None:
        self.ticks += 1

    def receive(self, envelope: backstage.Envelope) -> None:
        if envelope.message == "stop":
            self.ctx.shutdown()


###############################################################################
# main
###############################################################################

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--pages", type=int, default=40, help="pages on the site")
    parser.add_argument("--fetchers", type=int, default=8, help="routees in the pool")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds to serve a page")
    args = parser.parse_args(argv)

    server, root = start_site(args.pages, args.delay)
    print(f"site: {args.pages} pages from {root}, {args.delay:.2f} s each")
    try:
        with backstage.Engine(thread_pool_size=args.fetchers) as engine:
            engine.spawn_pool(Fetcher, "fetchers", args.fetchers)
            ticker = engine.spawn_actor(Ticker, "ticker")
            crawler = engine.spawn_actor(Crawler, "crawler", root)
            started = time.perf_counter()
            engine.send("crawler", "start")
            engine.run()
            elapsed = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()

    print(f"crawled {len(crawler.seen)} pages and {crawler.links} links, "
          f"{len(crawler.failed)} failed")
    fetchers = f"{args.fetchers} fetcher{'s' if args.fetchers != 1 else ''}"
    print(f"{elapsed:.2f} s with {fetchers}; one page at a time would take at least "
          f"{args.pages * args.delay:.2f} s")
    print(f"the ticker ticked {ticker.ticks} times meanwhile: nothing blocked the engine")
    return 1 if crawler.failed else 0


if __name__ == "__main__":
    sys.exit(main())
