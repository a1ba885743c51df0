"""The Redis server benchmarks run against: ``REDIS_URL`` when set, else an embedded one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from actor_admin.cluster import EmbeddedRedis


@contextmanager
def bench_redis_url() -> Iterator[str]:
    """The URL of the server to measure against, for the block's duration."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedRedis(Path(data_dir)) as server:
        yield server.url
