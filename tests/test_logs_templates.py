"""Masking of variable parts and the template miner: add / match, parameters, exact save -> load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import syslog_lines

from ejc.errors import EjcError
from ejc.logs.parse import LogParser
from ejc.logs.templates import MASK_TOKENS, WILDCARD, MinerConfig, TemplateMiner, mask, mask_values

LOGHUB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "logs" / "loghub_2k"


@pytest.mark.parametrize(
    ("message", "masked", "values"),
    [
        ("Accepted password for root from 10.0.0.5 port 5022", "Accepted password for root from <IP> port <NUM>", ["10.0.0.5", "5022"]),
        ("connect to /10.10.34.11:3888 failed", "connect to /<IP> failed", ["10.10.34.11:3888"]),  # IPv4 with port
        ("peer 2001:db8::8a2e:370:7334 and ::1 and fe80::1ff:fe23:4567:890a", "peer <IP> and <IP> and <IP>", ["2001:db8::8a2e:370:7334", "::1", "fe80::1ff:fe23:4567:890a"]),
        ("MAC=00:1a:2b:3c:4d:5e:66:77:88:99:aa:bb:08:00 link 00:1A:2B:3C:4D:5E up", "MAC=<MAC> link <MAC> up", ["00:1a:2b:3c:4d:5e:66:77:88:99:aa:bb:08:00", "00:1A:2B:3C:4D:5E"]),
        ("instance 38101a0b-2096-447d-96ea-a692162415ae req-38101A0B-2096-447D-96EA-A692162415AE", "instance <UUID> req-<UUID>", ["38101a0b-2096-447d-96ea-a692162415ae", "38101A0B-2096-447D-96EA-A692162415AE"]),
        ("addr 0x7ffd1234 id deadbeef12", "addr <HEX> id <HEX>", ["0x7ffd1234", "deadbeef12"]),
        ("took 12.5 ms, -3 retries, v1.4.2", "took <NUM> ms, <NUM> retries, v<NUM>", ["12.5", "-3", "1.4.2"]),
        ("blk_-6952295868487656571 attempt_14_0020 tty2 jk2_init", "blk_<NUM> attempt_<NUM>_<NUM> tty<NUM> jk2_init", ["-6952295868487656571", "14", "0020", "2"]),
        ("open /var/log/syslog and ~/.ssh/id_rsa and /etc/x.conf", "open <PATH> and <PATH> and <PATH>", ["/var/log/syslog", "~/.ssh/id_rsa", "/etc/x.conf"]),
        ("mail to john.doe+x@example.co.uk sent", "mail to <EMAIL> sent", ["john.doe+x@example.co.uk"]),
        ("at 2005-06-03 15:42:50.123 and 2005-06-03-15.42.50.675872", "at <TIME> and <TIME>", ["2005-06-03 15:42:50.123", "2005-06-03-15.42.50.675872"]),
        ("since Fri Dec 10 19:02:14 EST 2004 or Jun 14 15:16:01 or 15:42:50", "since <TIME> or <TIME> or <TIME>", ["Fri Dec 10 19:02:14 EST 2004", "Jun 14 15:16:01", "15:42:50"]),
        ("fetch http://example.com/a?b=c done", "fetch <URL> done", ["http://example.com/a?b=c"]),
        ("host node-7.example.com up", "host <HOST> up", ["node-7.example.com"]),
        ("list 10.0.0.1,10.0.0.2,10.0.0.3 done", "list <IP> done", ["10.0.0.1,10.0.0.2,10.0.0.3"]),  # a list is one value
        ("cpus an1 an2 an3 an4 ok", "cpus an<NUM> ok", ["1 2 3 4"]),  # a run of alike tokens is one token
        ("plain words only: nothing_to_mask", "plain words only: nothing_to_mask", []),
    ],
)
def test_mask_replaces_each_kind_of_variable(message, masked, values):
    assert mask_values(message) == (masked, values)
    assert mask(message) == masked


def test_mask_tokens_are_the_documented_set():
    assert MASK_TOKENS == ("<TIME>", "<UUID>", "<MAC>", "<IP>", "<EMAIL>", "<URL>", "<HOST>", "<PATH>", "<HEX>", "<NUM>")
    assert mask("") == "" and mask("a  b") == "a  b"  # constant text kept byte for byte


def test_add_joins_lines_that_differ_in_variables_and_match_does_not_learn():
    m = TemplateMiner()
    assert m.add("Accepted password for root from 10.0.0.5 port 5022 ssh2") == (1, "Accepted password for root from <IP> port <NUM> ssh<NUM>", True)
    assert m.add("Accepted password for root from 192.168.1.20 port 61 ssh2") == (1, "Accepted password for root from <IP> port <NUM> ssh<NUM>", False)
    assert m.add("finished in 12 ms for job alpha")[2] is True
    assert m.add("finished in 15 ms for job beta") == (2, f"finished in <NUM> ms for job {WILDCARD}", False)  # the template generalised
    assert m.add("disk full") == (3, "disk full", True)
    assert m.sizes() == {1: 2, 2: 2, 3: 1} and len(m) == 3
    before = json.dumps(m.state_dict())
    assert m.match("Accepted password for root from 10.9.9.9 port 1 ssh2") == (1, "Accepted password for root from <IP> port <NUM> ssh<NUM>")
    assert m.match("finished in 1 ms for job zeta") == (2, "finished in <NUM> ms for job <*>")
    assert m.match("disk on fire") == (None, None) and m.match("finished in 1 ms for job") == (None, None)
    assert json.dumps(m.state_dict()) == before  # match changed nothing
    assert m.templates() == {1: "Accepted password for root from <IP> port <NUM> ssh<NUM>", 2: "finished in <NUM> ms for job <*>", 3: "disk full"}


def test_parameters_are_the_original_text_behind_masks_and_wildcards():
    m = TemplateMiner()
    m.add("finished in 12 ms for job alpha")
    m.add("finished in 15 ms for job beta")
    tid, _, _ = m.add("node [node_a8] up after 3 s")
    m.add("node [node_b1] up after 4 s")
    assert m.parameters(1, "finished in 99 ms for job gamma") == ["99", "gamma"]
    assert m.templates()[tid] == "node [node_<*><NUM>] up after <NUM> s"
    assert m.parameters(tid, "node [node_c3] up after 9 s") == ["c", "3", "9"]
    sid, _, _ = m.add("Accepted password for root from 10.0.0.5 port 5022 ssh2")
    assert m.parameters(sid, "Accepted password for root from 10.0.0.6 port 1 ssh2") == ["10.0.0.6", "1", "2"]
    assert m.parameters(sid, "too short") == [] and m.parameters(999, "x") == []


def _messages(source: str) -> list[str]:
    if source == "synthetic":
        lines = syslog_lines(600, seed=3)
        lines += ["Dec  4 11:00:00 web1 kernel: Out of memory: Killed process 4242 (java)", "", "Dec  4 11:00:01 web1 app: " + "x" * 50_000]
    else:
        if not LOGHUB.is_dir():
            pytest.skip(f"real data folder {LOGHUB} is absent")
        lines = [b.decode("utf-8", "replace") for b in (LOGHUB / f"{source}_2k.log").read_bytes().splitlines()]
    p = LogParser(year=2026)
    return [p.parse(line, i).message for i, line in enumerate(lines, 1)]


@pytest.mark.parametrize("config", [MinerConfig(), MinerConfig(max_clusters=40)], ids=["unbounded", "lru40"])
@pytest.mark.parametrize("source", ["synthetic", "Linux", "OpenStack"])
def test_save_load_restores_exactly_and_mining_continues_identically(tmp_path, source, config):
    msgs = _messages(source)
    half = len(msgs) // 2
    a = TemplateMiner(config)
    for s in msgs[:half]:
        a.add(s)
    a.save(tmp_path / "t")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["drain_state.json", "miner_config.json"]
    b = TemplateMiner.load(tmp_path / "t")
    assert b.config == a.config
    assert b.templates() == a.templates() and b.sizes() == a.sizes()
    assert b.state_dict() == a.state_dict()
    assert [b.match(s) for s in msgs] == [a.match(s) for s in msgs]  # inference after load = before save
    assert [b.parameters(i, s) for i, s in zip(list(a.templates()) * 3, msgs[:300])] == [a.parameters(i, s) for i, s in zip(list(a.templates()) * 3, msgs[:300])]
    assert [b.add(s) for s in msgs[half:]] == [a.add(s) for s in msgs[half:]]  # learning goes on the same way
    assert b.state_dict() == a.state_dict()
    if config.max_clusters is not None:
        assert len(a) <= config.max_clusters and len(a._texts) <= 2 * config.max_clusters  # bounded state


def test_loading_a_missing_or_damaged_state_says_what_to_do(tmp_path):
    with pytest.raises(EjcError, match="does not hold saved templates"):
        TemplateMiner.load(tmp_path)
    m = TemplateMiner()
    m.add("a 1")
    m.save(tmp_path)
    (tmp_path / "drain_state.json").write_text("{not json")
    with pytest.raises(EjcError, match="not readable template state"):
        TemplateMiner.load(tmp_path)
    state = m.state_dict()
    state["format_version"] = 99
    with pytest.raises(EjcError, match="retrain the model"):
        TemplateMiner.from_state_dict(state)
    with pytest.raises(EjcError, match="unknown template-miner settings"):
        MinerConfig.from_dict({"sim_th": 0.5, "future_knob": 1})


def test_huge_messages_are_cut_before_mining():
    m = TemplateMiner()
    t0 = time.perf_counter()
    tid, text, _ = m.add("blob " + "y" * 1_000_000)
    assert time.perf_counter() - t0 < 1.0
    assert len(text) <= m.config.max_chars
    assert m.match("blob " + "y" * 2_000_000)[0] == tid  # the same first max_chars characters
