"""Log lines -> :class:`LogRecord`: format detection and per-format header parsing.

Pure functions (no I/O): :func:`parse_line` never raises, whatever the text, and a line that does
not fit the format asked for falls back to the other formats, then to ``"generic"`` (a timestamp
and a message), then to ``"raw"`` (the whole line is the message): every line becomes a record,
none is dropped. :class:`LogParser` adds per-file auto-detection that works line by line (for
``tail -f``) and counts the lines per format actually used.

Formats (:data:`FORMATS`, most specific first; detection breaks ties by this order):

=============== =========================================================================== ==========================
format          example line                                                                source
=============== =========================================================================== ==========================
bgl             ``- 1117838570 2005.06.03 R02-M1-N0 2005-06-03-15.42.50.675872 R02-M1-N0``  node/component
                ``RAS KERNEL INFO msg`` (first field: the alert label -> ``fields["label"]``)
thunderbird     ``- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2915]: msg`` host/program
openstack       ``nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO``     program/component
                ``nova.osapi_compute.wsgi.server [req-... - - -] msg``
hdfs            ``081109 203615 148 INFO dfs.DataNode$PacketResponder: msg``                 component
hadoop          ``2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.X: msg``             component
zookeeper       ``2015-07-29 17:41:44,747 - INFO  [node:Component@774] - msg``               component
spark           ``17/06/09 20:10:40 INFO executor.CoarseGrainedExecutorBackend: msg``        component
rfc5424         ``<34>1 2003-10-11T22:14:15.003Z host su - ID47 [sd@1 a="b"] msg``            host/app
firewall        any syslog / generic / bare line whose message has ``SRC=`` and ``DST=``    as its header's
                (iptables, ufw): every ``KEY=VALUE`` becomes a field, ``[UFW BLOCK]`` ->
                ``fields["action"]``
apache_error    ``[Sun Dec 04 04:47:44 2005] [notice] msg`` (2.4: ``[core:error] [pid 1]``)  module or ""
apache_access   ``1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 ...``  client
                (common / combined, nginx too); message ``GET / HTTP/1.0 200``
nginx_error     ``2026/12/04 10:00:00 [error] 1234#0: *5 open() "/x" failed, client: 1.2``  nginx
                (``pid``, ``tid``, ``connection`` and the trailing ``client:``, ``server:``,
                ``request:``, ``upstream:``, ``host:`` pairs -> fields; the message keeps them)
json            ``{"time": ..., "level": ..., "msg": ...}`` (keys chosen by common names)    host/service
rfc3164         ``<13>Jun 14 15:16:01 combo sshd(pam_unix)[19939]: msg`` (PRI optional, ISO  host/program
                timestamps too; Linux_2k style)
generic         ``<timestamp> [LEVEL] msg`` for ISO, ``yyyy/mm/dd``, ``yy/mm/dd``, syslog   ""
                and epoch timestamps
raw             anything else: ``message`` is the whole line                               ""
=============== =========================================================================== ==========================

``source`` is host + program (``"combo/sshd"``: the program's ``(...)`` / ``[pid]`` suffixes
dropped; the full tag is ``fields["program"]``); for Java logger formats without a host it is
the logger component. Times are unix seconds (UTC unless the line gives an offset); formats
without a year (syslog ``Jun 14 15:16:01``) take the ``year`` argument, by default the current
UTC year (what syslog daemons assume); :class:`LogParser` takes the previous year when the
first such time would lie in the future, and moves to the next year when such a time jumps back
by more than half a year (December -> January), counting bad input in ``issues``. Severities are upper-case,
``WARN`` -> ``WARNING``, ``ERR`` -> ``ERROR``, ``CRIT`` -> ``CRITICAL``, ``EMERG`` ->
``EMERGENCY``; a syslog PRI gives its severity name; an access log's status gives ``ERROR``
(5xx), ``WARNING`` (4xx) or ``INFO``.

Labels in the data are never features: BGL's / Thunderbird's first field (``-`` = normal, else an
alert category) is ``fields["label"]`` only, it is not in ``message``, ``source`` or any other
field.
"""

from __future__ import annotations

import calendar
import json
import re
import time as _time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

FORMATS: tuple[str, ...] = (
    "bgl",
    "thunderbird",
    "openstack",
    "hdfs",
    "hadoop",
    "zookeeper",
    "spark",
    "rfc5424",
    "firewall",
    "apache_error",
    "apache_access",
    "nginx_error",
    "json",
    "rfc3164",
    "generic",
    "raw",
)

# formats whose lines may come out as "firewall" (a firewall line inside that header) without
# counting as a misfit of the file's format
_FIREWALL_HOSTS = frozenset({"rfc3164", "rfc5424", "generic", "firewall"})

MAX_LINE_CHARS = 1 << 20  # longer lines are cut (the record's raw keeps the first MiB)


@dataclass(slots=True)
class LogRecord:
    """One parsed log line. ``time``: unix seconds (UTC) or None; ``source``: host + program
    (``""`` when unknown); ``severity``: normalised upper-case or None; ``message``: the free text
    templates are mined on; ``fields``: header and content fields (all strings)."""

    line_no: int
    raw: str
    format: str
    time: float | None
    source: str
    severity: str | None
    message: str
    fields: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# text hygiene

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")  # C0 controls but tab and newline; DEL


def decode_line(b: bytes) -> str:
    """Bytes of one line -> text: invalid UTF-8 replaced (U+FFFD), the line ending dropped, NULs
    and control characters (all but tab and newline) removed."""
    text = b.decode("utf-8", "replace").rstrip("\r\n")
    return text if text.isprintable() else _CONTROL.sub("", text)


def _clean(line: str) -> str:
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS]
    if line.isprintable():
        return line
    return _CONTROL.sub("", line)


# ----------------------------------------------------------------------------------------------
# times and severities

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

_SEVERITY_ALIASES = {
    "WARN": "WARNING", "ERR": "ERROR", "CRIT": "CRITICAL", "EMERG": "EMERGENCY", "PANIC": "EMERGENCY",
    "INFORMATION": "INFO", "INFORMATIONAL": "INFO", "DBG": "DEBUG", "FAIL": "FAILURE", "FATAL": "FATAL",
}
# syslog severities by PRI % 8
_SYSLOG_SEVERITY = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
_LEVEL_WORDS = r"(?:TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR|CRIT(?:ICAL)?|ALERT|EMERG(?:ENCY)?|FATAL|SEVERE|FAILURE)"


def normalise_severity(level: str | None) -> str | None:
    """``"warn"`` -> ``"WARNING"``, ``"err"`` -> ``"ERROR"``, ``""`` / ``"-"`` -> None."""
    if not level:
        return None
    s = level.strip().strip("[]:").upper()
    if not s or s == "-":
        return None
    return _SEVERITY_ALIASES.get(s, s)


def _epoch(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: float = 0.0, offset_s: int = 0) -> float | None:
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 60 and 1 <= y <= 9999):
        return None
    try:
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + frac - offset_s
    except (ValueError, OverflowError):
        return None


def _frac(digits: str | None) -> float:
    return float("0." + digits) if digits else 0.0


def _offset(tz: str | None) -> int:
    """``Z`` / ``+02:00`` / ``-0700`` -> seconds east of UTC."""
    if not tz or tz in ("Z", "z"):
        return 0
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    try:
        return sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    except ValueError:
        return 0


def _year_now() -> int:
    return _time.gmtime().tm_year


def _month(name: str) -> int:
    return _MONTHS.get(name[:3].lower(), 0)


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s?(Z|[+-]\d{2}:?\d{2})?")


def parse_iso(text: str) -> float | None:
    """An ISO-8601-like time (``2017-05-16 00:00:00.008``, ``2003-10-11T22:14:15.003Z``,
    ``2015-10-18 18:01:47,978``, with optional offset) -> unix seconds, else None."""
    m = _ISO.match(text.strip())
    if m is None:
        return None
    y, mo, d, h, mi, s, fr, tz = m.groups()
    return _epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), _frac(fr), _offset(tz))


def _time_value(v: object) -> float | None:
    """A JSON time value: epoch seconds / milliseconds (number or digit string) or ISO text."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        x = float(v)
    elif isinstance(v, str):
        t = parse_iso(v)
        if t is not None:
            return t
        try:
            x = float(v)
        except ValueError:
            return None
    else:
        return None
    if x != x or x <= 0:
        return None
    if x > 1e14:  # microseconds
        x /= 1e6
    elif x > 1e11:  # milliseconds
        x /= 1e3
    return x


# ----------------------------------------------------------------------------------------------
# per-format parsers: (line, line_no, year) -> LogRecord | None (None = the line does not fit)

Parser = Callable[[str, int, int | None], "LogRecord | None"]


def _program_base(program: str) -> str:
    """``sshd(pam_unix)`` -> ``sshd``; ``syslogd 1.4.1`` -> ``syslogd``; ``postfix/smtpd`` stays."""
    p = program.strip()
    for ch in "([ ":
        i = p.find(ch)
        if i > 0:
            p = p[:i]
    return p


def _join_source(host: str | None, program: str | None) -> str:
    parts = [x for x in (host, program) if x and x != "-"]
    return "/".join(parts)


# -- syslog RFC 3164 (BSD) -----------------------------------------------------------------------
# loghub's Linux header: <Month> <Date> <Time> <Level(=host)> <Component>(\[<PID>\])?: <Content>.
# The tag may hold spaces (``syslogd 1.4.1: restart.``) like loghub's non-greedy header regex,
# but at most 64 characters; without a tag the rest after the host is the message.
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?"
    r"(?:([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:\s+(\d{4}))?"  # Jun 14 15:16:01 [2005]
    r"|(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?))"  # rsyslog ISO
    r"\s+(\S+)\s+"  # host
    r"(?:(\S(?:[^:\[(]|\([^)]{0,40}\)){0,63}?)(?:\[(\d+)\])?:(?:\s+|$))?"  # tag[pid]:
    r"(.*)",
    re.S,
)


def _syslog_time(groups: tuple, year: int | None) -> float | None:
    mon, day, h, mi, s, fr, yr, iso = groups
    if iso is not None:
        return parse_iso(iso)
    mo = _month(mon)
    if not mo:
        return None
    y = int(yr) if yr else (year if year is not None else _year_now())
    return _epoch(y, mo, int(day), int(h), int(mi), int(s), _frac(fr))


def _parse_rfc3164(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _RFC3164.match(line)
    if m is None:
        return None
    g = m.groups()
    pri, host, tag, pid, msg = g[0], g[9], g[10], g[11], g[12]
    if g[1] is not None and not _month(g[1]):
        return None
    fields: dict[str, str] = {"host": host}
    severity = None
    if pri is not None:
        p = int(pri)
        if p > 191:
            return None
        fields["facility"] = str(p // 8)
        severity = _SYSLOG_SEVERITY[p % 8]
    program = ""
    if tag is not None:
        program = tag.strip()
        fields["program"] = program
        if pid is not None:
            fields["pid"] = pid
    rec = LogRecord(line_no, line, "rfc3164", _syslog_time(g[1:9], year), _join_source(host, _program_base(program)), severity, msg.strip(), fields)
    return _maybe_firewall(rec)


# -- syslog RFC 5424 -----------------------------------------------------------------------------
_RFC5424 = re.compile(
    r"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?$",
    re.S,
)
_SD_PARAM = re.compile(r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"')


def _parse_rfc5424(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _RFC5424.match(line)
    if m is None:
        return None
    pri, version, ts, host, app, procid, msgid, sd, msg = m.groups()
    p = int(pri)
    if p > 191:
        return None
    fields = {"host": host, "facility": str(p // 8), "version": version}
    for k, v in (("program", app), ("pid", procid), ("msgid", msgid)):
        if v != "-":
            fields[k] = v
    if sd != "-":
        fields["structured_data"] = sd
        for k, v in _SD_PARAM.findall(sd):
            fields[f"sd.{k}"] = v
    msg = (msg or "").lstrip("\ufeff").strip()
    t = parse_iso(ts) if ts != "-" else None
    rec = LogRecord(line_no, line, "rfc5424", t, _join_source(host if host != "-" else "", app if app != "-" else ""), _SYSLOG_SEVERITY[p % 8], msg, fields)
    return _maybe_firewall(rec)


# -- firewall (iptables / ufw) -------------------------------------------------------------------
_KV_UPPER = re.compile(r"(?<![\w=])([A-Z][A-Z0-9_]*)=(\S*)")
_FW_ACTION = re.compile(r"\[(?:UFW|FW|IPTABLES)?\s*([A-Z][A-Z ]*?)\]")
_KERNEL_TS = re.compile(r"\[\s*(\d+\.\d+)\]\s*")


def _is_firewall(msg: str) -> bool:
    return "SRC=" in msg and "DST=" in msg


def _maybe_firewall(rec: LogRecord) -> LogRecord:
    """A syslog / generic record whose message has ``SRC=`` and ``DST=`` becomes a firewall
    record: ``KEY=VALUE`` pairs (upper-case keys) are added to the fields, the header's stay."""
    msg = rec.message
    if not _is_firewall(msg):
        return rec
    for k, v in _KV_UPPER.findall(msg):
        rec.fields.setdefault(k, v)
    m = _FW_ACTION.search(msg)
    if m is not None and m.start() < msg.find("SRC="):
        rec.fields.setdefault("action", m.group(1).strip())
    k = _KERNEL_TS.match(msg)
    if k is not None:
        rec.fields.setdefault("kernel_time", k.group(1))
    rec.format = "firewall"
    return rec


def _parse_firewall(line: str, line_no: int, year: int | None) -> LogRecord | None:
    if not _is_firewall(line):
        return None
    for parse in (_parse_rfc3164, _parse_rfc5424, _parse_generic):
        rec = parse(line, line_no, year)
        if rec is not None and rec.format == "firewall":
            return rec
    return _maybe_firewall(LogRecord(line_no, line, "raw", None, "", None, line.strip(), {}))


# -- loghub headers ------------------------------------------------------------------------------
# <Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>
_BGL = re.compile(r"(\S+) (\d{9,11}) (\d{4}\.\d{2}\.\d{2}) (\S+) (\d{4})-(\d{2})-(\d{2})-(\d{2})\.(\d{2})\.(\d{2})\.(\d+) (\S+) (\S+) (\S+) (\S+)(?: (.*))?$", re.S)


def _parse_bgl(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _BGL.match(line)
    if m is None:
        return None
    label, epoch, date, node, y, mo, d, h, mi, s, fr, node_repeat, typ, comp, level, msg = m.groups()
    fields = {"label": label, "timestamp": epoch, "date": date, "node": node, "time": f"{y}-{mo}-{d}-{h}.{mi}.{s}.{fr}",
              "node_repeat": node_repeat, "type": typ, "component": comp, "level": level}
    t = _epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), _frac(fr))  # the line's own clock, microseconds
    if t is None:
        t = float(epoch)
    return LogRecord(line_no, line, "bgl", t, _join_source(node, comp), normalise_severity(level), (msg or "").strip(), fields)


# <Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>(\[<PID>\])?: <Content>
_THUNDERBIRD = re.compile(
    r"(\S+) (\d{9,11}) (\d{4}\.\d{2}\.\d{2}) (\S+) ([A-Z][a-z]{2})\s+(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\S+) "
    r"(?:(\S(?:[^:\[(]|\([^)]{0,40}\)){0,63}?)(?:\[(\d+)\])?:(?:\s+|$))?(.*)$",
    re.S,
)


def _parse_thunderbird(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _THUNDERBIRD.match(line)
    if m is None:
        return None
    label, epoch, date, user, mon, day, h, mi, s, location, comp, pid, msg = m.groups()
    fields = {"label": label, "timestamp": epoch, "date": date, "host": user, "location": location}
    program = ""
    if comp is not None:
        program = comp.strip()
        fields["program"] = program
        if pid is not None:
            fields["pid"] = pid
    rec = LogRecord(line_no, line, "thunderbird", float(epoch), _join_source(user, _program_base(program)), None, msg.strip(), fields)
    return rec


# <Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>
_OPENSTACK = re.compile(
    r"(\S+) (\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))? (\d+) ([A-Z]+) (\S+) \[([^\]]*)\] ?(.*)$", re.S
)
_REQ_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _parse_openstack(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _OPENSTACK.match(line)
    if m is None:
        return None
    logrecord, y, mo, d, h, mi, s, fr, pid, level, comp, addr, msg = m.groups()
    fields = {"logrecord": logrecord, "pid": pid, "level": level, "component": comp, "context": addr}
    r = _REQ_ID.search(addr)
    if r is not None:
        fields["request_id"] = r.group(0)
    program = logrecord.split(".log", 1)[0] if ".log" in logrecord else ""
    if program:
        fields["program"] = program
    t = _epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), _frac(fr))
    return LogRecord(line_no, line, "openstack", t, _join_source(program, comp), normalise_severity(level), msg.strip(), fields)


# <Date> <Time> <Pid> <Level> <Component>: <Content>     (081109 203615 148 INFO dfs.DataNode$...: ...)
_HDFS = re.compile(r"(\d{2})(\d{2})(\d{2}) (\d{2})(\d{2})(\d{2}) (\d+) ([A-Z]+) (\S+?): ?(.*)$", re.S)


def _parse_hdfs(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _HDFS.match(line)
    if m is None:
        return None
    yy, mo, d, h, mi, s, pid, level, comp, msg = m.groups()
    t = _epoch(2000 + int(yy), int(mo), int(d), int(h), int(mi), int(s))
    if t is None:
        return None
    return LogRecord(line_no, line, "hdfs", t, comp, normalise_severity(level), msg.strip(), {"pid": pid, "component": comp, "level": level})


# <Date> <Time> <Level> \[<Process>\] <Component>: <Content>
_HADOOP = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}),(\d{3}) ([A-Z]+) \[([^\]]*)\] (\S+?): ?(.*)$", re.S)


def _parse_hadoop(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _HADOOP.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s, fr, level, process, comp, msg = m.groups()
    t = _epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), _frac(fr))
    return LogRecord(line_no, line, "hadoop", t, comp, normalise_severity(level), msg.strip(), {"process": process, "component": comp, "level": level})


# <Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>
_ZOOKEEPER = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}),(\d{3}) - ([A-Z]+) +\[(.*?)@(\d+)\] - ?(.*)$", re.S)


def _parse_zookeeper(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _ZOOKEEPER.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s, fr, level, where, lineno, msg = m.groups()
    node, _, comp = where.rpartition(":")
    fields = {"node": node, "component": comp, "id": lineno, "level": level}
    t = _epoch(int(y), int(mo), int(d), int(h), int(mi), int(s), _frac(fr))
    return LogRecord(line_no, line, "zookeeper", t, comp, normalise_severity(level), msg.strip(), fields)


# <Date> <Time> <Level> <Component>: <Content>     (17/06/09 20:10:40 INFO executor.X: ...)
_SPARK = re.compile(r"(\d{2})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) ([A-Z]+) (\S+?): ?(.*)$", re.S)


def _parse_spark(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _SPARK.match(line)
    if m is None:
        return None
    yy, mo, d, h, mi, s, level, comp, msg = m.groups()
    t = _epoch(2000 + int(yy), int(mo), int(d), int(h), int(mi), int(s))
    if t is None:
        return None
    return LogRecord(line_no, line, "spark", t, comp, normalise_severity(level), msg.strip(), {"component": comp, "level": level})


# -- Apache --------------------------------------------------------------------------------------
# [Sun Dec 04 04:47:44 2005] [notice] msg  /  2.4: [Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 1:tid 2] [client 1.2.3.4:5] msg
_APACHE_ERROR = re.compile(
    r"\[(?:[A-Z][a-z]{2}) ([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))? (\d{4})\] "
    r"\[(?:([\w.-]+):)?([A-Za-z]+\d?)\] ?"
    r"(?:\[pid (\d+)(?::tid (\d+))?\] ?)?"
    r"(?=(?:\[client ([^\]]+)\])?)(.*)$",  # [client ...] stays in the message (loghub's Content keeps it)
    re.S,
)


def _parse_apache_error(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _APACHE_ERROR.match(line)
    if m is None:
        return None
    mon, day, h, mi, s, fr, y, module, level, pid, tid, client, msg = m.groups()
    mo = _month(mon)
    if not mo:
        return None
    fields = {"level": level}
    for k, v in (("module", module), ("pid", pid), ("tid", tid), ("client", client)):
        if v is not None:
            fields[k] = v
    t = _epoch(int(y), mo, int(day), int(h), int(mi), int(s), _frac(fr))
    return LogRecord(line_no, line, "apache_error", t, module or "", normalise_severity(level), msg.strip(), fields)


# 127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "referer" "agent"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_APACHE_ACCESS = re.compile(
    r"(\S+) (\S+) (\S+) \[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))? ?([+-]\d{4})?\] "
    + _QUOTED + r" (\d{3}|-) (\d+|-)(?: " + _QUOTED + r" " + _QUOTED + r")?(.*)$",
    re.S,
)


def _parse_apache_access(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _APACHE_ACCESS.match(line)
    if m is None:
        return None
    client, ident, user, d, mon, y, h, mi, s, fr, tz, request, status, size, referer, agent, rest = m.groups()
    mo = _month(mon)
    if not mo:
        return None
    fields = {"client": client, "status": status, "size": size, "request": request}
    if ident != "-":
        fields["ident"] = ident
    if user != "-":
        fields["user"] = user
    parts = request.split()
    if len(parts) == 3:
        fields["method"], fields["path"], fields["protocol"] = parts
    elif len(parts) == 2:
        fields["method"], fields["path"] = parts
    if referer is not None:
        fields["referer"] = referer
        fields["agent"] = agent
    if rest.strip():
        fields["extra"] = rest.strip()
    severity = "ERROR" if status.startswith("5") else "WARNING" if status.startswith("4") else "INFO" if status != "-" else None
    t = _epoch(int(y), mo, int(d), int(h), int(mi), int(s), _frac(fr), _offset(tz))
    return LogRecord(line_no, line, "apache_access", t, client, severity, f"{request} {status}".strip(), fields)


# -- nginx error log ----------------------------------------------------------------------------
# 2026/12/04 10:00:00 [error] 1234#0: *5 open() "/usr/share/nginx/html/x" failed (2: ...), client: 1.2.3.4, server: localhost
_NGINX_ERROR = re.compile(
    r"(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) \[(debug|info|notice|warn|error|crit|alert|emerg)\] (\d+)#(\d+): (?:\*(\d+) )?(.*)$",
    re.S,
)
_NGINX_PAIR = re.compile(r', (client|server|request|upstream|host|referrer): ("[^"]*"|[^,]*)')


def _parse_nginx_error(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _NGINX_ERROR.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, s, level, pid, tid, conn, msg = m.groups()
    fields = {"level": level, "pid": pid, "tid": tid, "program": "nginx"}
    if conn is not None:
        fields["connection"] = conn
    for k, v in _NGINX_PAIR.findall(msg):
        fields.setdefault(k, v.strip('"'))
    t = _epoch(int(y), int(mo), int(d), int(h), int(mi), int(s))
    return LogRecord(line_no, line, "nginx_error", t, "nginx", normalise_severity(level), msg.strip(), fields)


# -- JSON lines ----------------------------------------------------------------------------------
_JSON_TIME = ("@timestamp", "timestamp", "time", "ts", "datetime", "date", "time_local", "eventTime", "t")
_JSON_MESSAGE = ("message", "msg", "log", "text", "event", "short_message", "body", "content")
_JSON_LEVEL = ("level", "severity", "lvl", "loglevel", "log_level", "levelname", "log.level", "priority", "status")
_JSON_HOST = ("host", "hostname", "host.name", "node", "server")
_JSON_PROGRAM = ("service", "app", "application", "program", "logger", "logger_name", "name", "component", "source", "process")


def _flatten(obj: dict, prefix: str = "", out: dict[str, object] | None = None, depth: int = 0) -> dict[str, object]:
    out = {} if out is None else out
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 3:
            _flatten(v, key + ".", out, depth + 1)
        else:
            out[key] = v
    return out


def _jstr(v: object) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def _first(flat: dict[str, object], keys: tuple[str, ...]) -> tuple[str | None, object]:
    for k in keys:
        v = flat.get(k)
        if v is not None and v != "":
            return k, v
    return None, None


def _parse_json(line: str, line_no: int, year: int | None) -> LogRecord | None:
    s = line.strip()
    if not (s.startswith("{") and s.endswith("}")):
        return None
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    flat = _flatten(obj)
    tk, tv = _first(flat, _JSON_TIME)
    mk, mv = _first(flat, _JSON_MESSAGE)
    lk, lv = _first(flat, _JSON_LEVEL)
    hk, hv = _first(flat, _JSON_HOST)
    pk, pv = _first(flat, _JSON_PROGRAM)
    used = {tk, mk, lk, hk, pk}
    fields = {str(k): _jstr(v) for k, v in flat.items() if k not in used}
    if hk is not None:
        fields["host"] = _jstr(hv)
    if pk is not None:
        fields["program"] = _jstr(pv)
    severity = None
    if lv is not None:
        if isinstance(lv, int) and not isinstance(lv, bool) and lk != "status":
            severity = _SYSLOG_SEVERITY[lv] if 0 <= lv <= 7 else None
        elif isinstance(lv, str) and (lk != "status" or re.fullmatch(_LEVEL_WORDS, lv.upper())):
            severity = normalise_severity(lv)
        if lk == "status" and severity is None:
            fields["status"] = _jstr(lv)
    message = _jstr(mv) if mv is not None else " ".join(f"{k}={v}" for k, v in fields.items())
    t = _time_value(tv) if tv is not None else None
    return LogRecord(line_no, line, "json", t, _join_source(_jstr(hv) if hv is not None else "", _jstr(pv) if pv is not None else ""),
                     severity, message.strip(), fields)


# -- generic: timestamp + message ---------------------------------------------------------------
_GENERIC = re.compile(
    r"\[?(?:"
    r"(\d{4})[-/.](\d{2})[-/.](\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s?(Z|[+-]\d{2}:?\d{2})?"  # 2024-01-02 03:04:05,678
    r"|(\d{2})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"  # yy/mm/dd HH:MM:SS
    r"|([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"  # Jun 14 15:16:01
    r"|(1\d{9})(?:\.(\d+))?(?!\d)"  # epoch seconds
    r")\]?[\s,|:-]*"
    r"(?:[\[(<]?(" + _LEVEL_WORDS + r")[\])>]?(?![\w.])[\s:|-]*)?"
    r"(.*)$",
    re.S | re.I,
)


def _parse_generic(line: str, line_no: int, year: int | None) -> LogRecord | None:
    m = _GENERIC.match(line)
    if m is None:
        return None
    g = m.groups()
    t: float | None
    if g[0] is not None:
        t = _epoch(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]), _frac(g[6]), _offset(g[7]))
    elif g[8] is not None:
        t = _epoch(2000 + int(g[8]), int(g[9]), int(g[10]), int(g[11]), int(g[12]), int(g[13]), _frac(g[14]))
    elif g[15] is not None:
        mo = _month(g[15])
        if not mo:
            return None
        t = _epoch(year if year is not None else _year_now(), mo, int(g[16]), int(g[17]), int(g[18]), int(g[19]), _frac(g[20]))
    else:
        t = float(g[21]) + _frac(g[22])
    if t is None:
        return None
    level, msg = g[23], g[24]
    fields = {"level": level} if level else {}
    rec = LogRecord(line_no, line, "generic", t, "", normalise_severity(level), msg.strip(), fields)
    return _maybe_firewall(rec)


def _parse_raw(line: str, line_no: int, year: int | None) -> LogRecord:
    return LogRecord(line_no, line, "raw", None, "", None, line.strip(), {})


_PARSERS: dict[str, Parser] = {
    "bgl": _parse_bgl,
    "thunderbird": _parse_thunderbird,
    "openstack": _parse_openstack,
    "hdfs": _parse_hdfs,
    "hadoop": _parse_hadoop,
    "zookeeper": _parse_zookeeper,
    "spark": _parse_spark,
    "rfc5424": _parse_rfc5424,
    "firewall": _parse_firewall,
    "apache_error": _parse_apache_error,
    "apache_access": _parse_apache_access,
    "nginx_error": _parse_nginx_error,
    "json": _parse_json,
    "rfc3164": _parse_rfc3164,
    "generic": _parse_generic,
    "raw": _parse_raw,
}
assert tuple(_PARSERS) == FORMATS

# the fallback order after the asked format: every specific format, then generic, then firewall
# (syslog / generic lines become firewall records by themselves; this catches bare ones), then raw
_FALLBACK = (*(f for f in FORMATS if f not in ("firewall", "raw")), "firewall")


def _check_format(fmt: str) -> None:
    if fmt not in _PARSERS:
        from ejc.errors import EjcError

        raise EjcError(f"unknown log format {fmt!r}; use 'auto' or one of: {', '.join(FORMATS)}")


def _fits(line: str, fmt: str, year: int | None) -> bool:
    try:
        rec = _PARSERS[fmt](line, 0, year)
    except Exception:  # noqa: BLE001 - a parser bug on odd text must not stop detection
        return False
    return rec is not None and (rec.format == fmt or (fmt in _FIREWALL_HOSTS and rec.format == "firewall"))


def detect_format(lines: Sequence[str | bytes], sample: int = 200) -> str:
    """The format that parses the most of the first ``sample`` non-empty ``lines`` (ties: the more
    specific, earlier in :data:`FORMATS`); ``"raw"`` when none parses any. ``"firewall"`` counts
    only lines with ``SRC=`` / ``DST=``, so a syslog file with a few firewall lines stays
    ``"rfc3164"`` (its firewall lines still come out as firewall records)."""
    picked: list[str] = []
    for ln in lines:
        if len(picked) >= sample:
            break
        if isinstance(ln, (bytes, bytearray)):
            ln = decode_line(ln)
        ln = _clean(ln.rstrip("\r\n"))
        if ln.strip():
            picked.append(ln)
    best, best_n = "raw", 0
    for fmt in FORMATS[:-1]:
        n = sum(_fits(ln, fmt, None) for ln in picked)
        if n > best_n:
            best, best_n = fmt, n
    return best


def parse_line(line: str, fmt: str, line_no: int = 0, *, year: int | None = None) -> LogRecord:
    """Parse one line as ``fmt`` (one of :data:`FORMATS`); a line that does not fit falls back to
    the other formats, then ``"generic"``, then ``"raw"`` (``record.format`` says which was used).
    Never raises on any text: control characters and NULs are removed, a line over 1 MiB is cut
    (``raw`` keeps the cleaned text). ``year``: for times without one (default: this year, UTC)."""
    _check_format(fmt)
    if not isinstance(line, str):
        line = decode_line(line) if isinstance(line, (bytes, bytearray)) else str(line)
    line = _clean(line.rstrip("\r\n"))
    if not line.strip():
        return LogRecord(line_no, line, "raw", None, "", None, "", {})
    order = (fmt, *(f for f in _FALLBACK if f != fmt)) if fmt != "raw" else ()
    for f in order:
        try:
            rec = _PARSERS[f](line, line_no, year)
        except Exception:  # noqa: BLE001 - a header parser bug on odd text falls through to raw
            rec = None
        if rec is not None:
            return rec
    return _parse_raw(line, line_no, year)


#: what :attr:`LogParser.issues` counts (lines; a line may count under several)
ISSUES: tuple[str, ...] = ("empty", "invalid_utf8", "control_chars", "truncated", "time_backwards", "year_rollover")
_WINDOW_CHARS = 8192  # detection looks at this much of each line (bounded state on 1 MB lines)
_FUTURE_S = 2 * 86400  # a yearless time further ahead of the clock than this is last year's


class LogParser:
    """Line-by-line parser with per-file format detection and per-format counts.

    ``fmt="auto"`` detects without buffering, so a stream (``tail -f``) gets each record at once:
    the first non-empty line picks the format that parses it (most specific first); while fewer
    than ``sample`` lines have been seen, a line that does not fit re-detects on all lines seen so
    far, and afterwards re-detection runs on the last ``sample`` lines whenever more than half of
    them did not fit. A line that does not fit the current format is still parsed by the per-line
    fallback of :func:`parse_line`, so detection only decides which format is tried first (and wins
    when a line fits several). With a fixed ``fmt`` no detection happens.

    ``counts``: lines per format actually used (``"raw"`` included, empty lines count as raw).
    ``issues``: lines per kind of bad input (:data:`ISSUES`): ``empty``; ``invalid_utf8`` (bytes
    that are not UTF-8, replaced by U+FFFD; for text input, lines holding U+FFFD);
    ``control_chars`` (NULs and other control bytes, removed); ``truncated`` (over 1 MiB, cut);
    ``time_backwards`` (a time earlier than the previous timed line's: kept as written, never
    reordered); ``year_rollover`` (see below). None of them drops a line.

    Yearless syslog times (``Jun 14 15:16:01``) take ``year``; without one, the current UTC year,
    or the previous one when the first such time would lie more than two days in the future (a
    December log read in January). They move to the next year when they jump back by more than
    half a year (``Dec 31`` -> ``Jan 1``).
    """

    def __init__(self, fmt: str = "auto", sample: int = 200, year: int | None = None):
        if fmt != "auto":
            _check_format(fmt)
        if sample < 1:
            from ejc.errors import EjcError

            raise EjcError(f"sample must be at least 1, got {sample}")
        self.fmt = fmt
        self.sample = int(sample)
        self.format: str | None = None if fmt == "auto" else fmt  # the format tried first now
        self._year_given = year is not None
        self.year = year if year is not None else _year_now()
        self._counts: dict[str, int] = {}
        self._issues: dict[str, int] = dict.fromkeys(ISSUES, 0)
        self._window: deque[str] = deque(maxlen=self.sample)
        self._misfit: deque[bool] = deque(maxlen=self.sample)
        self._seen = 0
        self._last_yearless: float | None = None
        self._last_time: float | None = None
        self.detections = 0  # how many times the format was (re-)detected

    @staticmethod
    def decode(b: bytes) -> str:
        """Bytes of one line -> text (see :func:`decode_line`). :meth:`parse` takes the bytes
        themselves too, and then counts invalid UTF-8 exactly."""
        return decode_line(b)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def issues(self) -> dict[str, int]:
        return dict(self._issues)

    def _detect(self) -> None:
        self.format = detect_format(list(self._window), self.sample)
        self.detections += 1
        self._misfit.clear()

    def _text(self, line: str | bytes) -> str:
        """Decode, drop the line ending, cut, remove control characters; count what was wrong."""
        issues = self._issues
        if isinstance(line, (bytes, bytearray)):
            text = bytes(line).decode("utf-8", "replace")
            if "\ufffd" in text and text.count("\ufffd") > line.count(b"\xef\xbf\xbd"):
                issues["invalid_utf8"] += 1
        else:
            text = line if isinstance(line, str) else str(line)
            if "\ufffd" in text:
                issues["invalid_utf8"] += 1
        text = text.rstrip("\r\n")
        if len(text) > MAX_LINE_CHARS:
            issues["truncated"] += 1
            text = text[:MAX_LINE_CHARS]
        if not text.isprintable():
            cleaned = _CONTROL.sub("", text)
            if len(cleaned) != len(text):
                issues["control_chars"] += 1
            text = cleaned
        return text

    def parse(self, line: str | bytes, line_no: int) -> LogRecord:
        """One line (text or the raw bytes) -> its record (never raises)."""
        line = self._text(line)
        if not line.strip():
            self._issues["empty"] += 1
        elif self.fmt == "auto":
            self._seen += 1
            self._window.append(line if len(line) <= _WINDOW_CHARS else line[:_WINDOW_CHARS])
            if self.format is None:
                self._detect()
        rec = parse_line(line, self.format or "raw", line_no, year=self.year)
        if self.fmt == "auto" and line.strip():
            misfit = not (rec.format == self.format or (rec.format == "firewall" and self.format in _FIREWALL_HOSTS))
            self._misfit.append(misfit)
            if misfit and (self._seen <= self.sample or sum(self._misfit) * 2 > self.sample):
                self._detect()
                if self.format != rec.format:  # parse again so the chosen format wins ties
                    rec = parse_line(line, self.format, line_no, year=self.year)
        rec = self._year_rollover(rec)
        if rec.time is not None:
            if self._last_time is not None and rec.time < self._last_time:
                self._issues["time_backwards"] += 1
            self._last_time = rec.time
        self._counts[rec.format] = self._counts.get(rec.format, 0) + 1
        return rec

    def _year_rollover(self, rec: LogRecord) -> LogRecord:
        """Yearless syslog times: the first one decides the year when none was given (last year
        when it would lie in the future); later, a jump back by over half a year means the next
        year (``Dec 31`` then ``Jan 1``)."""
        if rec.time is None or rec.format not in ("rfc3164", "firewall", "generic") or not _yearless(rec.raw):
            return rec
        if self._last_yearless is None:
            if not self._year_given and rec.time > _time.time() + _FUTURE_S:
                self.year -= 1
                again = parse_line(rec.raw, rec.format, rec.line_no, year=self.year)
                if again.time is not None:
                    rec = again
        elif rec.time < self._last_yearless - 183 * 86400:
            self.year += 1
            self._issues["year_rollover"] += 1
            again = parse_line(rec.raw, rec.format, rec.line_no, year=self.year)
            if again.time is not None:
                rec = again
        self._last_yearless = rec.time
        return rec


_YEARLESS = re.compile(r"(?:<\d{1,3}>)?\[?[A-Z][a-z]{2}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}(?:\.\d+)?(?!\s+\d{4})")


def _yearless(raw: str) -> bool:
    return _YEARLESS.match(raw) is not None


__all__ = ["FORMATS", "ISSUES", "LogParser", "LogRecord", "decode_line", "detect_format", "normalise_severity", "parse_iso", "parse_line"]
