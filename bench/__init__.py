"""Benchmarks of backstage against its peers; see bench/run.py and docs/performance.md.

Each ``impl_*.py`` module implements the same scenarios for one implementation
(ours on each backend, the CPython floor, hand-written asyncio, Pykka,
Thespian).  A scenario function takes its sizes as keyword arguments, does the
work, checks nothing itself beyond what it must, and returns a dict with the
raw figures (``seconds``, ``ops``...) and ``value``: the result the work must
produce (skynet's sum, the number of deliveries), which tests/test_bench.py
checks at a tiny size so the benchmarks cannot rot.
"""
