"""The service searches with one numba thread: a one-query search has no work for a second one.

Each case runs in a fresh interpreter: numba sizes its thread pool once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHECK = """
import json, os, numba, numpy as np
from hashret.index import create_index
from hashret.serve.server import one_thread_per_search
index = create_index("popcount", 48)  # threads=None: all of numba's threads
codes = np.random.default_rng(0).integers(0, 256, (500, 6), dtype=np.uint8)
index.add(codes)
if os.environ.get("SEARCH_FIRST"):
    index.search(codes[:1], 5)  # starts numba's thread pool
n = one_thread_per_search()
seen, real = [], numba.set_num_threads
numba.set_num_threads = lambda t: (seen.append(t), real(t))
d, i = index.search(codes[:1], 5)
r = index.range_search(codes[:1], 0)
ok = bool(i[0, 0] == 0 and d[0, 0] == 0 and 0 in r[0][1])
numba.njit(lambda x: x + 1)(1)  # a compile reloads numba's config: it must still agree
print(json.dumps({"n": n, "env": os.environ.get("NUMBA_NUM_THREADS"), "entered": seen[0::2], "ok": ok,
                  "default": numba.config.NUMBA_DEFAULT_NUM_THREADS}))
"""


def _check(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", CHECK], env={**base, **env}, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_searches_run_on_one_thread_after_it():
    r = _check()
    assert r["ok"] and r["n"] == 1
    assert r["env"] == "1"  # worker processes spawned later inherit it
    assert r["entered"] == [1, 1]  # the top-k and the range search each ran on one thread


def test_a_thread_pool_started_already_is_kept():
    r = _check(SEARCH_FIRST="1")
    assert r["ok"] and r["n"] == r["default"]
    assert r["env"] == (None if r["default"] != 1 else "1")


def test_an_operators_own_setting_is_kept():
    r = _check(NUMBA_NUM_THREADS="2")
    assert r["ok"] and r["n"] == 2 and r["env"] == "2" and r["entered"] == [2, 2]
