"""Log line parsing: format detection, per-format fields, loghub headers, hostile input."""

from __future__ import annotations

import calendar
import csv
import random
import time
from pathlib import Path

import pytest

from ejc.errors import EjcError
from ejc.logs.parse import FORMATS, ISSUES, MAX_LINE_CHARS, LogParser, LogRecord, decode_line, detect_format, normalise_severity, parse_line

LOGHUB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "logs" / "loghub_2k"
needs_loghub = pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"real data folder {LOGHUB} is absent (see ../shared/data/README.md)")


def utc(*t: int) -> float:
    return float(calendar.timegm((*t, 0, 0, 0)))


def one(line: str, year: int = 2026) -> LogRecord:
    """Parse one line as a file of its own would be: detected format first."""
    return parse_line(line, detect_format([line]), 7, year=year)


# ----------------------------------------------------------------------------------------------
# formats


def test_rfc3164_with_pri_pid_and_program_suffix():
    line = "<13>Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 rhost=218.188.2.4"
    assert detect_format([line]) == "rfc3164"
    r = one(line, year=2005)
    assert (r.format, r.line_no, r.time, r.source) == ("rfc3164", 7, utc(2005, 6, 14, 15, 16, 1), "combo/sshd")
    assert r.severity == "NOTICE"  # 13 % 8 = 5
    assert r.fields == {"host": "combo", "facility": "1", "program": "sshd(pam_unix)", "pid": "19939"}
    assert r.message == "authentication failure; logname= uid=0 rhost=218.188.2.4"
    # no PRI, padded day, a tag with a space (loghub Linux), ISO time (rsyslog)
    r = one("Jun  9 06:06:20 combo syslogd 1.4.1: restart.", year=2005)
    assert (r.time, r.source, r.fields["program"], r.message, r.severity) == (utc(2005, 6, 9, 6, 6, 20), "combo/syslogd", "syslogd 1.4.1", "restart.", None)
    r = one("2026-12-04T10:00:00.250+01:00 web1 nginx[77]: reload")
    assert (r.format, r.time, r.source, r.message) == ("rfc3164", utc(2026, 12, 4, 9, 0, 0) + 0.25, "web1/nginx", "reload")


def test_rfc5424_header_and_structured_data():
    line = '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App"] An application event'
    assert detect_format([line]) == "rfc5424"
    r = one(line)
    assert r.time == pytest.approx(utc(2003, 10, 11, 22, 14, 15) + 0.003)
    assert (r.source, r.severity, r.message) == ("mymachine.example.com/evntslog", "NOTICE", "An application event")
    assert r.fields["facility"] == "20" and r.fields["msgid"] == "ID47" and "pid" not in r.fields
    assert (r.fields["sd.iut"], r.fields["sd.eventSource"]) == ("3", "App")
    r = one("<11>1 2026-12-04T10:00:00-05:00 db1 postgres 4242 - - \ufeffcheckpoint starting")
    assert (r.time, r.severity, r.fields["pid"], r.message) == (utc(2026, 12, 4, 15, 0, 0), "ERROR", "4242", "checkpoint starting")


def test_apache_and_nginx_access_logs():
    common = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
    combined = '203.0.113.5 - - [04/Dec/2026:10:00:00 +0000] "POST /api/v1/x HTTP/1.1" 502 157 "-" "curl/8.0"'
    assert detect_format([common, combined]) == "apache_access"
    r = one(common)
    assert (r.format, r.time, r.source, r.severity, r.message) == ("apache_access", utc(2000, 10, 10, 20, 55, 36), "127.0.0.1", "INFO", "GET /apache_pb.gif HTTP/1.0 200")
    assert (r.fields["user"], r.fields["method"], r.fields["path"], r.fields["status"], r.fields["size"]) == ("frank", "GET", "/apache_pb.gif", "200", "2326")
    r = one(combined)
    assert (r.severity, r.fields["agent"], r.fields["referer"], r.fields["protocol"]) == ("ERROR", "curl/8.0", "-", "HTTP/1.1")
    assert one('10.0.0.1 - - [04/Dec/2026:10:00:00 +0000] "GET /missing HTTP/1.1" 404 0 "-" "Mozilla/5.0"').severity == "WARNING"


def test_apache_and_nginx_error_logs():
    r = one("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties")
    assert (r.format, r.time, r.severity, r.message) == ("apache_error", utc(2005, 12, 4, 4, 47, 44), "NOTICE", "workerEnv.init() ok /etc/httpd/conf/workers2.properties")
    r = one("[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:5000] File does not exist: /x")
    assert (r.source, r.severity, r.fields["pid"], r.fields["tid"], r.fields["client"]) == ("core", "ERROR", "35708", "4328636416", "72.15.99.187:5000")
    assert r.message == "[client 72.15.99.187:5000] File does not exist: /x"  # loghub's Content keeps [client]
    line = '2026/12/04 10:00:00 [error] 1234#0: *5 open() "/usr/share/nginx/html/x" failed (2: No such file or directory), client: 1.2.3.4, server: localhost, request: "GET /x HTTP/1.1"'
    assert detect_format([line]) == "nginx_error"
    r = one(line)
    assert (r.format, r.time, r.source, r.severity) == ("nginx_error", utc(2026, 12, 4, 10, 0, 0), "nginx", "ERROR")
    assert (r.fields["pid"], r.fields["connection"], r.fields["client"], r.fields["server"], r.fields["request"]) == ("1234", "5", "1.2.3.4", "localhost", "GET /x HTTP/1.1")
    assert r.message.startswith('open() "/usr/share/nginx/html/x" failed')


def test_firewall_lines_have_their_key_values_as_fields():
    ufw = ("Dec  4 10:00:00 fw kernel: [12345.678901] [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 "
           "SRC=203.0.113.9 DST=10.0.0.2 LEN=60 TTL=52 ID=1 DF PROTO=TCP SPT=51514 DPT=22 WINDOW=29200 SYN URGP=0")
    r = one(ufw)
    assert (r.format, r.source, r.time) == ("firewall", "fw/kernel", utc(2026, 12, 4, 10, 0, 0))
    assert {k: r.fields[k] for k in ("SRC", "DST", "PROTO", "SPT", "DPT", "IN", "OUT")} == {"SRC": "203.0.113.9", "DST": "10.0.0.2", "PROTO": "TCP", "SPT": "51514", "DPT": "22", "IN": "eth0", "OUT": ""}
    assert (r.fields["action"], r.fields["kernel_time"], r.fields["host"]) == ("BLOCK", "12345.678901", "fw")
    bare = "IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=UDP SPT=53 DPT=3333"
    assert detect_format([bare]) == "firewall"
    r = parse_line(bare, "firewall")
    assert (r.format, r.time, r.fields["PROTO"], r.fields["SPT"], r.fields["DPT"]) == ("firewall", None, "UDP", "53", "3333")
    # a syslog file with a few firewall lines stays syslog; its firewall lines are still firewall records
    lines = ["Dec  4 10:00:00 h sshd[1]: Accepted password for root from 10.0.0.5 port 22 ssh2"] * 3 + [ufw]
    assert detect_format(lines) == "rfc3164"
    assert parse_line(ufw, "rfc3164").format == "firewall"


def test_json_lines_pick_common_keys_and_keep_the_rest():
    r = one('{"@timestamp": "2026-12-04T10:00:00Z", "level": "warn", "message": "disk almost full", "host": {"name": "db1"}, "service": "pg", "pct": 91, "tags": ["a"]}')
    assert (r.format, r.time, r.severity, r.message, r.source) == ("json", utc(2026, 12, 4, 10, 0, 0), "WARNING", "disk almost full", "db1/pg")
    assert r.fields == {"pct": "91", "tags": '["a"]', "host": "db1", "program": "pg"}
    r = one('{"ts": 1764842400123, "msg": "x", "severity": 3}')  # epoch milliseconds, numeric syslog severity
    assert (r.time, r.severity) == (pytest.approx(1764842400.123), "ERROR")
    assert one('{"no": "message"}').message == "no=message"
    assert one("[1, 2]").format == "raw"  # JSON but not an object
    assert one('{"broken": ').format == "raw"


def test_generic_timestamp_and_message_and_raw_fallback():
    r = one("2026-12-04 10:00:00,123 ERROR something broke")
    assert (r.format, r.time, r.severity, r.message) == ("generic", pytest.approx(utc(2026, 12, 4, 10, 0, 0) + 0.123), "ERROR", "something broke")
    r = one("1764842400.5 [WARN] epoch line")
    assert (r.format, r.time, r.severity, r.message) == ("generic", 1764842400.5, "WARNING", "epoch line")
    r = one("[2026/12/04 10:00:00] worker started")
    assert (r.format, r.time, r.severity, r.message) == ("generic", utc(2026, 12, 4, 10, 0, 0), None, "worker started")
    r = one("no timestamp here at all")
    assert (r.format, r.time, r.source, r.severity, r.message, r.fields) == ("raw", None, "", None, "no timestamp here at all", {})
    assert detect_format(["no", "format", "here"]) == "raw"


def test_severity_names_are_normalised():
    assert [normalise_severity(s) for s in ("warn", "err", "[crit]", "EMERG", "info:", "-", "", None)] == ["WARNING", "ERROR", "CRITICAL", "EMERGENCY", "INFO", None, None, None]


def test_unknown_format_is_an_error_naming_the_choices():
    with pytest.raises(EjcError, match="unknown log format 'syslog'.*rfc3164"):
        parse_line("x", "syslog")
    with pytest.raises(EjcError, match="rfc5424"):
        LogParser("syslog")


# ----------------------------------------------------------------------------------------------
# loghub headers, on the first lines of the real files (read at test time)

LOGHUB_FORMATS = {"Apache": "apache_error", "BGL": "bgl", "HDFS": "hdfs", "Hadoop": "hadoop", "Linux": "rfc3164", "OpenStack": "openstack",
                  "Spark": "spark", "Thunderbird": "thunderbird", "Zookeeper": "zookeeper"}


@needs_loghub
@pytest.mark.parametrize("system", sorted(LOGHUB_FORMATS))
def test_loghub_headers_are_detected_and_give_the_benchmark_content(system):
    n = 40
    with open(LOGHUB / f"{system}_2k.log", "rb") as f:
        raw = [next(f) for _ in range(n)]
    with open(LOGHUB / f"{system}_2k.log_structured.csv", newline="", encoding="utf-8") as f:
        truth = [row for _, row in zip(range(n), csv.DictReader(f))]
    expected = LOGHUB_FORMATS[system]
    assert detect_format(raw) == expected
    parser = LogParser()
    recs = [parser.parse(b, i) for i, b in enumerate(raw, 1)]
    assert parser.counts == {expected: n}
    assert parser.format == expected and parser.detections == 1
    for rec, row in zip(recs, truth):
        assert rec.message == row["Content"].strip()  # the header is exactly what loghub's regex strips
        assert rec.time is not None and rec.time > 0
        if "Level" in row and system not in ("Linux", "BGL"):  # Linux's "Level" column is the host
            assert rec.severity == normalise_severity(row["Level"])
        if "Label" in row:  # alert labels are a field only, never in the message or source
            assert rec.fields["label"] == row["Label"]
    if system == "Linux":
        assert [r.source.split("/")[0] for r in recs] == [row["Level"] for row in truth]  # loghub calls the host "Level"
        assert all(r.fields["program"] == row["Component"] for r, row in zip(recs, truth))


@needs_loghub
def test_bgl_alert_label_stays_out_of_the_message():
    with open(LOGHUB / "BGL_2k.log", "rb") as f:
        alert = next(b for b in f if not b.startswith(b"- "))
    r = LogParser().parse(alert, 1)
    label = alert.split(b" ", 1)[0].decode()
    assert r.format == "bgl" and r.fields["label"] == label != "-"
    assert label not in r.message.split()[:1] and label not in r.source


# ----------------------------------------------------------------------------------------------
# hostile input: handled, counted, never dropped


def test_invalid_utf8_binary_and_nul_bytes_are_cleaned_and_counted():
    p = LogParser(year=2026)
    r = p.parse(b"Dec  4 10:00:00 h app: bad \xff\xfe bytes \x00 nul \x01\x02 ctl\r\n", 1)
    assert r.format == "rfc3164" and r.message == "bad \ufffd\ufffd bytes  nul  ctl"
    assert "\x00" not in r.raw and "\r" not in r.raw
    assert p.issues["invalid_utf8"] == 1 and p.issues["control_chars"] == 1
    r = p.parse("Dec  4 10:00:01 h app: a literal \ufffd".encode(), 2)  # valid UTF-8 of U+FFFD is not invalid input
    assert p.issues["invalid_utf8"] == 1
    assert decode_line(b"x\x00y\tz\n") == "xy\tz"
    rng = random.Random(0)
    for i in range(300):  # random binary never raises and always gives a record
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        rec = p.parse(blob, 10 + i)
        assert rec.format in FORMATS and rec.line_no == 10 + i
        assert not any(ord(c) < 32 and c not in "\t\n" for c in rec.raw)
    assert sum(p.counts.values()) == 302


def test_a_one_megabyte_line_is_cut_and_fast():
    p = LogParser(year=2026)
    line = "Dec  4 10:00:00 h app: " + "x" * (2 * MAX_LINE_CHARS)
    t0 = time.perf_counter()
    r = p.parse(line, 1)
    junk = p.parse(bytes(range(256)) * 4096, 2)  # 1 MiB of every byte value
    assert time.perf_counter() - t0 < 1.0
    assert len(r.raw) == MAX_LINE_CHARS and r.format == "rfc3164" and r.message.startswith("xxx")
    assert p.issues["truncated"] == 1 and junk.format in FORMATS
    assert len(p._window[-1]) <= 8192  # detection state stays small


def test_empty_lines_become_empty_raw_records_and_are_counted():
    p = LogParser()
    recs = [p.parse(b, i) for i, b in enumerate([b"\n", b"   \n", b"Dec  4 10:00:00 h a: x\n", b""], 1)]
    assert [(r.line_no, r.format, r.message) for r in recs] == [(1, "raw", ""), (2, "raw", ""), (3, "rfc3164", "x"), (4, "raw", "")]
    assert p.issues["empty"] == 3 and p.counts == {"raw": 3, "rfc3164": 1}
    assert p.format == "rfc3164"  # empty lines do not drive detection


def test_interleaved_formats_each_line_parsed_as_its_own():
    lines = ['{"msg": "a", "level": "info"}', "Dec  4 10:00:00 h sshd[1]: x",
             '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1',
             "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_1 terminating",
             "IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=UDP SPT=53 DPT=3333", "plain words"]
    p = LogParser(year=2026)
    got = [p.parse(line, i).format for i, line in enumerate(lines * 50)]
    assert got == ["json", "rfc3164", "apache_access", "hdfs", "firewall", "raw"] * 50
    assert p.counts == {f: 50 for f in ("json", "rfc3164", "apache_access", "hdfs", "firewall", "raw")}
    # after the first `sample` (200) lines, re-detection runs at most once per 100 misfits
    d0 = p.detections
    for i, line in enumerate(lines * 100):
        p.parse(line, 300 + i)
    assert p.detections - d0 <= 600 // 100


def test_timestamps_going_backwards_are_kept_and_counted():
    p = LogParser()
    times = [p.parse(f"2026-12-04 10:00:0{s} INFO tick", i).time for i, s in enumerate((1, 3, 2, 5, 4), 1)]
    assert times == [utc(2026, 12, 4, 10, 0, s) for s in (1, 3, 2, 5, 4)]  # never reordered or dropped
    assert p.issues["time_backwards"] == 2


def test_yearless_syslog_rolls_over_to_the_next_year():
    p = LogParser(year=2025)
    lines = ["Dec 31 23:59:58 h a: x", "Dec 31 23:59:59 h a: y", "Jan  1 00:00:01 h a: z", "Jan  1 00:00:00 h a: a second back", "Mar  1 00:00:00 h a: w"]
    times = [p.parse(line, i).time for i, line in enumerate(lines, 1)]
    assert times == [utc(2025, 12, 31, 23, 59, 58), utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1, 0, 0, 1), utc(2026, 1, 1, 0, 0, 0), utc(2026, 3, 1, 0, 0, 0)]
    assert p.year == 2026 and p.issues["year_rollover"] == 1 and p.issues["time_backwards"] == 1
    # firewall lines under a syslog header roll over too
    q = LogParser(year=2025)
    q.parse("Dec 31 23:59:59 fw kernel: SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP", 1)
    assert q.parse("Jan  1 00:00:01 fw kernel: SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP", 2).time == utc(2026, 1, 1, 0, 0, 1)


def test_a_yearless_time_in_the_future_is_last_years():
    ahead = time.time() + 40 * 86400  # a month ahead of the clock: written last year
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(ahead))
    r = LogParser().parse(f"{stamp} h a: from last year", 1)
    assert time.time() - 366 * 86400 < r.time < time.time()
    now = time.strftime("%b %d %H:%M:%S", time.gmtime())
    assert abs(LogParser().parse(f"{now} h a: now", 1).time - time.time()) < 5  # today stays this year
    assert LogParser(year=2030).parse(f"{stamp} h a: given", 1).time > utc(2030, 1, 1, 0, 0, 0)  # a given year is kept


def test_parser_issue_names_are_public():
    assert ISSUES == ("empty", "invalid_utf8", "control_chars", "truncated", "time_backwards", "year_rollover")
    assert set(LogParser().issues) == set(ISSUES)
