"""Log templates: :func:`mask` the variable parts of a message, then mine templates with Drain.

``mask("Accepted password for root from 10.0.0.5 port 5022 ssh2")`` ->
``"Accepted password for root from <IP> port <NUM> ssh2"``: one precompiled regex (an
alternation, leftmost match wins, the order below breaks ties), applied token by token through a
cache (logs repeat their tokens; only times like ``Jun 14 15:16:01`` span spaces, and a message
holding ``HH:MM:SS`` gets one pass over the whole text instead).

========= ====================================================================================
token     what it replaces
========= ====================================================================================
<TIME>    embedded dates and times: ``2005-06-03 15:42:50.123``, ``2005-06-03-15.42.50.675872``,
          ``15:42:50``, ``2005-06-03``, ``2005/06/03``, ``Fri Dec 10 19:02:14 EST 2004``
<UUID>    ``38101a0b-2096-447d-96ea-a692162415ae`` (any case, ``req-`` / ``instance`` prefixes kept)
<MAC>     ``00:1a:2b:3c:4d:5e`` and longer colon-separated hex-pair chains (iptables ``MAC=``)
<IP>      IPv4 with an optional ``:port`` (``/10.10.34.11:3888`` -> ``/<IP>``), IPv6
<EMAIL>   ``user@example.com``
<URL>     ``scheme://...``
<HOST>    dotted names of 3+ parts ending in a letter: host names (``node-7.example.com``)
          and qualified class names (``org.apache.hadoop.Foo$Bar``)
<PATH>    ``/var/www/html/``, ``/dev/sda1``, ``~/.ssh/id_rsa``, ``/etc/x.conf``
<HEX>     ``0x7ffd``, and hex ids of 8+ characters with at least one digit and one letter
<NUM>     every other number (sign, dotted parts: ``1.4.2``), also inside identifiers after
          ``_`` / ``-`` (``blk_-6952295868487656571`` -> ``blk_<NUM>``, ``attempt_14_0020`` ->
          ``attempt_<NUM>_<NUM>``) and at the end of a word (``tty2`` -> ``tty<NUM>``), not
          inside one (``jk2_init`` stays)
========= ====================================================================================

Two rewrites make lists of any length share a template: a list of one kind written without
spaces (``10.0.0.1,10.0.0.2`` -> ``<IP>``) and a run of 3+ space-separated tokens that mask alike
(``an1 an2 an3`` -> ``an<NUM>``) become one token.

:class:`TemplateMiner` wraps drain3's Drain (drain3-improved, the ``drain3`` module) on masked
messages with one default configuration for every system (:class:`MinerConfig`; chosen on the
loghub 2k files, see benchmarks/RESULTS.md "Log parsing (issue 16)"). Template ids are stable
for the life of a model: an id never changes its meaning, but a template's *text* can generalise
as more lines arrive (drain3's ``cluster_template_changed``: a constant token becomes ``<*>``).
``add`` returns the current text; keep the id, not the text, as the event type.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ejc.errors import EjcError

# ----------------------------------------------------------------------------------------------
# masking

MASK_TOKENS = ("<TIME>", "<UUID>", "<MAC>", "<IP>", "<EMAIL>", "<URL>", "<HOST>", "<PATH>", "<HEX>", "<NUM>")
WILDCARD = "<*>"

_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_IPV4 = r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}"
_H4 = r"[0-9a-fA-F]{1,4}"
_IPV6 = (
    rf"(?:(?:{_H4}:){{7}}{_H4}"  # full
    rf"|(?:{_H4}:){{1,6}}:(?:{_H4}(?::{_H4}){{0,5}})?"  # a::b, a::
    rf"|::(?:{_H4}(?::{_H4}){{0,6}}))"  # ::1
)

_MASK_RE = re.compile(
    "|".join(
        (
            # embedded timestamps (before numbers and IPv6, which would eat their parts)
            rf"(?P<TIME>(?:{_DAY}\s+)?{_MON}\s+\d{{1,2}}\s+\d{{2}}:\d{{2}}:\d{{2}}(?:\s+[A-Z]{{3,4}})?(?:\s+\d{{4}})?"
            rf"|\d{{4}}[-/.]\d{{2}}[-/.]\d{{2}}(?:(?:[T\s]\d{{2}}:\d{{2}}:\d{{2}}|[_-]\d{{2}}[:.]\d{{2}}[:.]\d{{2}})(?:[.,]\d+)?(?:Z|[+-]\d{{2}}:?\d{{2}})?)?"
            rf"|(?<![\d:])\d{{2}}:\d{{2}}:\d{{2}}(?:[.,]\d+)?(?![\d:]))",
            rf"(?P<UUID>\b[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}}\b)",
            rf"(?P<MAC>\b[0-9a-fA-F]{{2}}(?::[0-9a-fA-F]{{2}}){{5,}}\b)",
            rf"(?P<IP>(?<![\w.]){_IPV4}(?::\d{{1,5}})?(?![\w.]|\.\d)|(?<![\w:.]){_IPV6}(?![\w:]))",
            r"(?P<EMAIL>\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b)",
            r"(?P<URL>\b[a-zA-Z][\w+.-]*://\S+)",
            r"(?P<HOST>(?<![\w.:/$-])[A-Za-z0-9][\w$-]*(?:\.[\w$-]+){2,}(?<=[A-Za-z])(?![\w$-]|\.\w))",
            r"(?P<PATH>(?<![\w.:/-])(?:~|\.{1,2})?(?:/[\w.@%+~:,=-]+){2,}/?|(?<![\w.:/-])/[\w.@%+~-]*[\w@%+~-]/"
            r"|(?<![\w.:/-])/(?=[^\s/]*[A-Za-z])(?:[\w@%+~-]+\.)+[\w@%+~-]+)",
            r"(?P<HEX>\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b)",
            r"(?P<NUM>(?<![\dA-Za-z])[-+]?\d+(?:\.\d+)*|(?<=[A-Za-z])\d+(?:\.\d+)*(?!\w))",
        )
    )
)


_LIST = re.compile(r"<(TIME|UUID|MAC|IP|EMAIL|URL|HOST|PATH|HEX|NUM)>(?:[,;]<\1>)+")
_PIECE = re.compile(r"(<\*>|<(?:TIME|UUID|MAC|IP|EMAIL|URL|HOST|PATH|HEX|NUM)>)")
_HMS = re.compile(r"\d{2}:\d{2}:\d{2}")  # the only kind of match that can span a space
_CACHE: dict[str, tuple[str, tuple[str, ...]]] = {}
_CACHE_MAX = 1 << 17


def mask(message: str) -> str:
    """The message with its variable parts replaced by ``<IP>``, ``<NUM>``, ... (see the module
    table); constant text is kept byte for byte, except that lists and runs of alike values
    become one token."""
    return mask_values(message)[0]


def mask_values(message: str) -> tuple[str, list[str]]:
    """``mask(message)`` and the masked values in order (``["10.0.0.5", "5022"]``; a collapsed
    list or run gives one value, its original text)."""
    if ":" in message and _HMS.search(message) is not None:
        # a time may span spaces ("Jun 14 15:16:01"): one pass over the whole message
        parts = _split_masked(*_mask_text(message))
    else:
        # no other match spans a space: mask token by token, through a cache (logs repeat tokens)
        parts = []
        cache = _CACHE
        for tok in message.split(" "):
            hit = cache.get(tok)
            if hit is None:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                hit = cache[tok] = _mask_token(tok)
            parts.append(hit)
    if len(parts) >= 3:
        parts = _collapse_runs(parts)
    return " ".join(p[0] for p in parts), [v for p in parts for v in p[1]]


def _mask_text(text: str) -> tuple[str, list[str]]:
    values: list[str] = []

    def keep(m: re.Match[str]) -> str:
        values.append(m.group(0))
        return f"<{m.lastgroup}>"

    return _MASK_RE.sub(keep, text), values


def _mask_token(tok: str) -> tuple[str, tuple[str, ...]]:
    masked, values = _mask_text(tok)
    if ">," in masked or ">;" in masked:
        masked, values = _collapse_lists(masked, values)
    return masked, tuple(values)


def _collapse_lists(masked: str, values: list[str]) -> tuple[str, list[str]]:
    """``<IP>,<IP>`` -> ``<IP>`` (one value ``"a,b"``) inside one token."""
    pieces = _PIECE.split(masked)  # literal, mask, literal, mask, ..., literal
    out, vals = [pieces[0]], []
    vi, i = 0, 1
    while i < len(pieces):
        kind = pieces[i]
        value = values[vi] if vi < len(values) else ""
        vi += 1
        while i + 2 < len(pieces) and pieces[i + 1] in (",", ";") and pieces[i + 2] == kind:
            value += pieces[i + 1] + (values[vi] if vi < len(values) else "")
            vi += 1
            i += 2
        out += [kind, pieces[i + 1]]
        vals.append(value)
        i += 2
    return "".join(out), vals


def _split_masked(masked: str, values: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    parts: list[tuple[str, tuple[str, ...]]] = []
    vi = 0
    for tok in masked.split(" "):
        n = len(_PIECE.findall(tok))
        mt, mv = tok, list(values[vi : vi + n])
        vi += n
        if ">," in mt or ">;" in mt:
            mt, mv = _collapse_lists(mt, mv)
        parts.append((mt, tuple(mv)))
    return parts


def _collapse_runs(parts: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    """A run of 3+ equal masked tokens (each with a mask) -> the first; each of its values the
    run's values joined by spaces."""
    out: list[tuple[str, tuple[str, ...]]] = []
    i, n = 0, len(parts)
    while i < n:
        tok = parts[i][0]
        j = i + 1
        if "<" in tok:
            while j < n and parts[j][0] == tok:
                j += 1
        if j - i >= 3:
            k = len(parts[i][1])
            out.append((tok, tuple(" ".join(p[1][m] for p in parts[i:j] if m < len(p[1])) for m in range(k))))
        else:
            out.extend(parts[i:j])
        i = j
    return out


# ----------------------------------------------------------------------------------------------
# mining


@dataclass
class MinerConfig:
    """Drain settings plus ejc's own pre-processing; one default for every kind of log.

    ``sim_th``: similarity a message needs to join a cluster; ``depth``: prefix-tree depth
    (drain3 counts the root and the length level, so depth 4 routes on the first token);
    ``max_children``: children per tree node; ``max_clusters``: None = unbounded (ids stay
    stable; an LRU bound would evict ids); ``extra_delimiters``: characters split like spaces
    (Drain's tokenisation only; templates keep the original text); ``max_chars``: longer messages
    are cut before mining (a 1 MB line costs no more than a 10 kB one); ``variables_match``:
    two tokens that both hold a mask (``curl:amd<NUM>``, ``libc:amd<NUM>``) count as similar,
    not only tokens of the same shape.

    The defaults were chosen on the loghub 2k files (benchmarks/RESULTS.md, "Log parsing (issue
    16)"): GA is flat for ``sim_th`` 0.6-0.75 at depth 8; above 0.75 a 4-token message with one
    variable word (dpkg's ``status installed <pkg> <version>``) no longer joins its template.
    Depth 8 routes on the first 5 tokens literally, which loghub's truth rewards (``VM Paused`` and
    ``VM Resumed`` are different events) but which splits a template whose variable word comes
    that early (``Accepted password for <user>``: one template per user); depth 5-6 avoids that at
    a lower loghub GA (0.93 mean instead of 0.96)."""

    sim_th: float = 0.7
    depth: int = 8
    max_children: int = 100
    max_clusters: int | None = None
    extra_delimiters: tuple[str, ...] = ()
    parametrize_numeric_tokens: bool = True
    max_chars: int = 10_000
    variables_match: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra_delimiters"] = list(self.extra_delimiters)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinerConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EjcError(f"unknown template-miner settings {unknown}; the model was written by a newer ejc, upgrade ejc")
        d = dict(d)
        if "extra_delimiters" in d:
            d["extra_delimiters"] = tuple(d["extra_delimiters"])
        return cls(**d)


STATE_FILE = "drain_state.json"
CONFIG_FILE = "miner_config.json"
FORMAT_VERSION = 1


def _shape(token: str) -> str:
    return _PIECE.sub("\0", token) if "<" in token else token


@functools.lru_cache(maxsize=1 << 16)
def _token_regex(template_token: str) -> re.Pattern[str]:
    """``[node_<*>]`` -> a regex matching ``[node_a8]`` and ``[node_<NUM>]``: ``<*>`` is any text,
    a mask token any mask token."""
    parts = []
    for piece in _PIECE.split(template_token):
        if piece == WILDCARD:
            parts.append(".+?")
        elif piece.startswith("<") and _PIECE.fullmatch(piece):
            parts.append(r"<[A-Z]+>")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.S)


def _covers(t1: str, t2: str, variables_match: bool) -> bool:
    """Template token ``t1`` (may hold ``<*>`` and mask tokens) covers message token ``t2``."""
    if t1 == t2:
        return True
    if "<" not in t1:
        return False
    if "<" in t2 and (variables_match or _shape(t1) == _shape(t2)):
        return True
    return WILDCARD in t1 and _token_regex(t1).fullmatch(t2) is not None


def _merge_token(msg: str, tmpl: str) -> str:
    """The template token that covers both: equal kept; same shape -> differing masks become
    ``<*>``; else the common prefix / suffix up to punctuation kept around one ``<*>``
    (``[node_a8]`` + ``[node_b1]`` -> ``[node_<*>]``), else ``<*>``."""
    if msg == tmpl or tmpl == WILDCARD:
        return tmpl
    if "<" in tmpl and "<" in msg and _shape(tmpl) == _shape(msg):
        a, b = _PIECE.split(tmpl), _PIECE.split(msg)
        return "".join(x if x == y else WILDCARD for x, y in zip(a, b))
    if WILDCARD in tmpl and _token_regex(tmpl).fullmatch(msg) is not None:
        return tmpl
    n = min(len(msg), len(tmpl))
    i = 0
    while i < n and msg[i] == tmpl[i]:
        i += 1
    while i > 0 and tmpl[i - 1].isalnum():  # the prefix ends at punctuation
        i -= 1
    pre = tmpl[:i]
    if pre.rfind("<") > pre.rfind(">"):  # never cut a mask token
        pre = pre[: pre.rfind("<")]
    j = 0
    while j < n - len(pre) and msg[-1 - j] == tmpl[-1 - j]:
        j += 1
    while j > 0 and tmpl[-j].isalnum():  # the suffix starts at punctuation
        j -= 1
    suf = tmpl[len(tmpl) - j :] if j else ""
    if suf.find(">") >= 0 and (suf.find("<") < 0 or suf.find(">") < suf.find("<")):
        suf = suf[suf.find(">") + 1 :]
    return f"{pre}{WILDCARD}{suf}"


def _drain_class() -> type:
    from drain3.drain import Drain

    class _Drain(Drain):
        """drain3's Drain on masked messages: masked tokens route like numbers (to the ``<*>``
        child of the prefix tree); in the similarity a ``<*>`` position meeting a masked value
        counts as similar, as do tokens that differ only in the kind of their masks (``<HEX>`` /
        ``<NUM>``) and tokens a partial wildcard covers (``[node_<*>]``); merging keeps the
        common punctuation of tokens (``(<*>)``, ``rhost=<*>``) instead of one bare ``<*>``."""

        @staticmethod
        def has_numbers(s: Iterable[str]) -> bool:
            return any(ch.isdigit() or ch == "<" for ch in s)

        def get_seq_distance(self, seq1, seq2, include_params):  # noqa: ANN001, ANN202 - drain3's signature
            if not seq1:
                return 1.0, 0
            sim = params = 0
            p = self.param_str
            for t1, t2 in zip(seq1, seq2):
                if t1 == t2:
                    sim += 1
                elif t1 == p:
                    params += 1
                    if include_params or "<" in t2:
                        sim += 1
                elif "<" in t1 and _covers(t1, t2, self.variables_match):
                    sim += 1
            return sim / len(seq1), params

        def create_template(self, seq1, seq2):  # noqa: ANN001, ANN202 - seq1: the message, seq2: the template
            return [_merge_token(t1, t2) for t1, t2 in zip(seq1, seq2)]

    return _Drain


_DRAIN: type | None = None


class TemplateMiner:
    """Streaming template miner: :func:`mask`, then drain3's Drain.

    ``add`` learns (may create a cluster or generalise one's text), ``match`` is inference only.
    Ids are drain3 cluster ids (1, 2, ...), never reused. State is saved as plain JSON (no
    pickle) and restored exactly: mining on after ``load`` gives the same ids and texts as never
    having stopped.
    """

    def __init__(self, config: MinerConfig | None = None):
        global _DRAIN
        if _DRAIN is None:
            _DRAIN = _drain_class()
        Drain = _DRAIN
        self.config = config if config is not None else MinerConfig()
        c = self.config
        self._drain = Drain(
            sim_th=c.sim_th,
            depth=c.depth,
            max_children=c.max_children,
            max_clusters=c.max_clusters,
            extra_delimiters=list(c.extra_delimiters),
            param_str=WILDCARD,
            parametrize_numeric_tokens=c.parametrize_numeric_tokens,
        )
        self._drain.variables_match = bool(c.variables_match)
        # the display text of each cluster: drain3 tokens joined with the message's own
        # separators (so extra delimiters do not show up as spaces in the template)
        self._texts: dict[int, str] = {}

    # -- learning and inference ------------------------------------------------------------------

    def _prepare(self, message: str) -> str:
        if len(message) > self.config.max_chars:
            message = message[: self.config.max_chars]
        return mask(message)

    def add(self, message: str) -> tuple[int, str, bool]:
        """Learn one message: ``(template id, template text, is_new_template)``."""
        masked = self._prepare(message)
        cluster, change = self._drain.add_log_message(masked)
        cid = int(cluster.cluster_id)
        texts = self._texts
        if change != "none" or cid not in texts:
            texts[cid] = self._display(cluster.log_template_tokens, masked)
            bound = self.config.max_clusters
            if bound is not None and len(texts) > 2 * bound:  # forget the texts of evicted clusters
                live = self._drain.id_to_cluster
                self._texts = {k: v for k, v in texts.items() if k in live}
        return cid, texts[cid], change == "cluster_created"

    def match(self, message: str) -> tuple[int | None, str | None]:
        """The template a message belongs to without learning: ``(id, text)``, or
        ``(None, None)`` when no template covers it."""
        cluster = self._drain.match(self._prepare(message), "fallback")
        if cluster is None:
            return None, None
        cid = int(cluster.cluster_id)
        return cid, self._texts.get(cid, cluster.get_template())

    def _clusters(self) -> list[Any]:
        """The clusters in ascending id order, read without touching the LRU order (an LRU
        cache's ``items()`` counts as use and would change which template is evicted next)."""
        d = self._drain.id_to_cluster
        return [c for c in (d.get(cid) for cid in sorted(d.keys())) if c is not None]

    def templates(self) -> dict[int, str]:
        """Every template: id -> current text (ascending ids)."""
        return {c.cluster_id: self._texts.get(c.cluster_id, c.get_template()) for c in self._clusters()}

    def sizes(self) -> dict[int, int]:
        """Lines learned per template id."""
        return {c.cluster_id: int(c.size) for c in self._clusters()}

    def __len__(self) -> int:
        return len(self._drain.id_to_cluster)

    def parameters(self, template_id: int, message: str) -> list[str]:
        """The variable values of ``message`` under template ``template_id``, in order: the text
        behind each mask token (``<IP>`` -> ``"10.0.0.5"``) and behind each ``<*>`` (``"root"``).
        ``[]`` for an unknown id or a message that does not line up with the template."""
        cluster = self._drain.id_to_cluster.get(template_id)
        if cluster is None:
            return []
        if len(message) > self.config.max_chars:
            message = message[: self.config.max_chars]
        masked, values = mask_values(message)
        tokens = self._drain.get_content_as_tokens(masked)
        tmpl = cluster.log_template_tokens
        if len(tokens) != len(tmpl):
            return []
        out: list[str] = []
        vi = 0
        for tt, mt in zip(tmpl, tokens):
            n = len(_PIECE.findall(mt))
            vals = list(values[vi : vi + n])
            vi += n
            if "<" not in tt:
                continue
            original = _unmask(mt, vals)
            if tt == WILDCARD:
                out.append(original)
                continue
            m = _capture_regex(tt).fullmatch(original)
            if m is not None:
                out.extend(m.groups())
            else:
                out.extend(vals or [original])
        return out

    # -- display ---------------------------------------------------------------------------------

    def _display(self, tokens: Iterable[str], masked: str) -> str:
        """Template tokens laid out with the separators of ``masked`` (the message that made the
        change), so ``uid=0`` stays ``uid=<NUM>`` rather than ``uid <NUM>`` under extra
        delimiters."""
        tokens = tuple(tokens)
        if not self.config.extra_delimiters:
            return " ".join(tokens)
        seps = _separators(masked, self.config.extra_delimiters)
        if len(seps) != len(tokens) + 1:
            return " ".join(tokens)
        parts = [seps[0]]
        for tok, sep in zip(tokens, seps[1:]):
            parts.append(tok)
            parts.append(sep)
        return "".join(parts).strip()

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain-JSON state: config, clusters (id, tokens, size, text; least recently used first
        when ``max_clusters`` bounds them), the id counter and the prefix tree (child order and
        cluster-id order kept)."""
        d = self._drain
        lru = getattr(d.id_to_cluster, "_LRUCache__order", None)  # the eviction order, with max_clusters
        order = list(lru) if lru is not None else list(d.id_to_cluster)
        clusters = [(cid, d.id_to_cluster.get(cid)) for cid in order]
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "clusters_counter": int(d.clusters_counter),
            "clusters": [
                {"id": int(cid), "tokens": list(c.log_template_tokens), "size": int(c.size), "text": self._texts.get(cid)}
                for cid, c in clusters
                if c is not None
            ],
            "tree": _node_to_json(d.root_node),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TemplateMiner:
        from drain3.drain import LogCluster

        if state.get("format_version") != FORMAT_VERSION:
            raise EjcError(f"template state format {state.get('format_version')!r} is not {FORMAT_VERSION}; it was written by another ejc version: retrain the model or use that version")
        miner = cls(MinerConfig.from_dict(state["config"]))
        d = miner._drain
        for c in state["clusters"]:
            cl = LogCluster(c["tokens"], int(c["id"]))
            cl.size = int(c["size"])
            d.id_to_cluster[cl.cluster_id] = cl
            if c.get("text") is not None:
                miner._texts[cl.cluster_id] = c["text"]
        d.clusters_counter = int(state["clusters_counter"])
        d.root_node = _node_from_json(state["tree"])
        return miner

    def save(self, dir: Path | str) -> Path:
        """Write ``dir/miner_config.json`` and ``dir/drain_state.json`` (each atomically: a temp
        file renamed into place)."""
        out = Path(dir)
        out.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        _atomic_write(out / CONFIG_FILE, json.dumps({"format_version": FORMAT_VERSION, **self.config.to_dict()}, indent=2) + "\n")
        _atomic_write(out / STATE_FILE, json.dumps(state, separators=(",", ":")) + "\n")
        return out

    @classmethod
    def load(cls, dir: Path | str) -> TemplateMiner:
        """The miner :meth:`save` wrote into ``dir``, exactly."""
        path = Path(dir) / STATE_FILE
        if not path.is_file():
            raise EjcError(f"{path} not found: {dir} does not hold saved templates (write them with TemplateMiner.save, e.g. by `ejc logs train`)")
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise EjcError(f"{path} is not readable template state ({e}); save the templates again") from e
        try:
            return cls.from_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            raise EjcError(f"{path} is corrupted ({type(e).__name__}: {e}); save the templates again") from e


def _unmask(token: str, values: list[str]) -> str:
    it = iter(values)
    return _PIECE.sub(lambda m: next(it, m.group(0)), token)


@functools.lru_cache(maxsize=1 << 14)
def _capture_regex(template_token: str) -> re.Pattern[str]:
    """``rhost=<*>`` -> ``rhost=(.+?)``: one group per ``<*>`` or mask token, on original text."""
    parts = []
    for piece in _PIECE.split(template_token):
        parts.append("(.+?)" if piece and _PIECE.fullmatch(piece) else re.escape(piece))
    return re.compile("".join(parts), re.S)


def _separators(text: str, delimiters: Iterable[str]) -> list[str]:
    """The separator runs around Drain's tokens of ``text``: ``len(tokens) + 1`` strings."""
    delims = "".join(re.escape(d) for d in delimiters)
    parts = re.split(rf"([\s{delims}]+)", text)
    # parts alternate token, sep, token, ...; empty tokens come from leading/trailing separators
    seps: list[str] = []
    cur = ""
    for i, p in enumerate(parts):
        if i % 2 == 1:
            cur += p
        elif p:
            seps.append(cur)
            cur = ""
    seps.append(cur)
    return seps


def _node_to_json(node: Any) -> dict[str, Any]:
    return {"ids": [int(i) for i in node.cluster_ids], "children": [[k, _node_to_json(v)] for k, v in node.key_to_child_node.items()]}


def _node_from_json(d: dict[str, Any]) -> Any:
    from drain3.drain import Node

    node = Node()
    node.cluster_ids = [int(i) for i in d["ids"]]
    node.key_to_child_node = {k: _node_from_json(v) for k, v in d["children"]}
    return node


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["MASK_TOKENS", "MinerConfig", "TemplateMiner", "WILDCARD", "mask", "mask_values"]
