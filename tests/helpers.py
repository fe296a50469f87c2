"""Small deterministic event data shared by the model tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ejc.data.sequence import EventSequence


def random_sequences(num: int = 20, seed: int = 0, min_len: int = 10, max_len: int = 60, two_modalities: bool = False) -> list[EventSequence]:
    rng = np.random.default_rng(seed)
    out = []
    for e in range(num):
        n = int(rng.integers(min_len, max_len))
        ts = np.cumsum(rng.exponential(60, size=n)) + 1.7e9
        types = [f"t{rng.integers(5)}" for _ in range(n)]
        if two_modalities:
            mods = ["a" if i % 3 else "b" for i in range(n)]
            vecs = [rng.normal(size=8) if m == "a" else rng.normal(size=4) for m in mods]
            out.append(EventSequence(embeddings=vecs, timestamps=ts, modality=mods, event_types=types, id=f"e{e}"))
        else:
            out.append(EventSequence(embeddings=rng.normal(size=(n, 8)), timestamps=ts, event_types=types, id=f"e{e}"))
    return out


def random_table(**kw) -> pa.Table:
    return pa.concat_tables([s.to_table() for s in random_sequences(**kw)])


def syslog_lines(n: int = 1500, seed: int = 0, start: float = 1_764_842_400.0) -> list[str]:
    """``n`` RFC 3164 lines from two hosts, each repeating a fixed cycle of four templates with
    varying users, IPs, ports and pids, one line every ~2 s: a quiet, regular log."""
    import time as _time

    rng = np.random.default_rng(seed)
    users = ["alice", "bob", "carol"]
    out = []
    t = start
    for i in range(n):
        host = ("web1", "web2")[i % 2]
        step = (i // 2) % 4
        pid = int(rng.integers(1000, 9000))
        if step == 0:
            msg = f"sshd[{pid}]: Accepted password for {users[int(rng.integers(3))]} from 10.0.0.{int(rng.integers(2, 9))} port {int(rng.integers(30000, 60000))} ssh2"
        elif step == 1:
            msg = f"sshd[{pid}]: pam_unix(sshd:session): session opened for user {users[int(rng.integers(3))]} by (uid=0)"
        elif step == 2:
            msg = f"CRON[{pid}]: (root) CMD (run-parts /etc/cron.hourly)"
        else:
            msg = f"sshd[{pid}]: pam_unix(sshd:session): session closed for user {users[int(rng.integers(3))]}"
        t += float(rng.uniform(1.5, 2.5))
        stamp = _time.strftime("%b %d %H:%M:%S", _time.gmtime(t)).replace(" 0", "  ", 1)
        out.append(f"{stamp} {host} {msg}")
    return out


ANOMALY_LINE = "Dec  4 11:00:00 web1 kernel: Out of memory: Killed process 4242 (java) total-vm:8123456kB"
