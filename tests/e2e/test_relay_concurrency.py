# Relay under load: 200 concurrent sessions all succeed and the proxy's thread count stays fixed.
import asyncio
import pathlib
import threading

import asyncpg
import pytest

CLIENTS = 200
QUERIES = 20
THREADS = 2
# Beyond the io threads: the main thread, the stats server, the audit writer, spdlog's worker.
EXTRA_THREADS = 4


def thread_count(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for pid {pid}")


class ThreadSampler:
    """Polls a process's thread count in the background and keeps the maximum."""

    def __init__(self, pid):
        self.pid = pid
        self.maximum = thread_count(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.maximum = max(self.maximum, thread_count(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def client(target, dbname, number, connected):
    conn = await asyncpg.connect(host=target.host, port=target.port, user="postgres", password="postgres",
                                 database=dbname, timeout=60)
    try:
        # Every client holds its connection open before any of them queries, so all of them overlap.
        connected.append(number)
        while len(connected) < CLIENTS:
            await asyncio.sleep(0.05)
        results = []
        for q in range(QUERIES):
            if q % 2:
                results.append(await conn.fetchval("SELECT $1::int * 1000 + $2::int", number, q))
            else:
                results.append(await conn.fetchval(f"SELECT {number} * 1000 + {q}"))
        return results
    finally:
        await conn.close()


async def run_clients(target, dbname):
    connected = []
    clients = [client(target, dbname, n, connected) for n in range(CLIENTS)]
    return await asyncio.wait_for(asyncio.gather(*clients), timeout=120)


@pytest.mark.slow
def test_200_concurrent_sessions_with_fixed_threads(db, start_proxy):
    proxy = start_proxy(db, config={"threads": THREADS})
    if proxy.process is None:
        results = asyncio.run(run_clients(proxy, db))
    else:
        with ThreadSampler(proxy.process.pid) as sampler:
            results = asyncio.run(run_clients(proxy, db))
        assert sampler.maximum <= THREADS + EXTRA_THREADS, sampler.maximum
        assert proxy.process.poll() is None
    assert results == [[n * 1000 + q for q in range(QUERIES)] for n in range(CLIENTS)]
