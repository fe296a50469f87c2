"""HTTP request/response models of the ejc Serve app, and the pure conversions between them and
ejc objects (``EventSequence``, ``PredictedEvent``, ``AnomalyResult``, cube neighbours).

Nothing here imports Ray, so all of it is unit-tested without a cluster. The limits bound what
one request can ask for (events, vector width, steps, paths, neighbours, string lengths), so no
request can make a replica run for long or hold much memory; the body size is bounded again in
front of JSON parsing (``serve.api``). Checks that need the loaded model (modality names and
widths, known event types) raise :class:`~ejc.errors.RequestError` naming the field.

Per-event outputs follow the request's event order: events must come in time order (events
without a timestamp may sit anywhere; they take their predecessor's time).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ejc.data.schema import DEFAULT_MODALITY
from ejc.data.sequence import EventSequence
from ejc.errors import EjcError, RequestError

MAX_EVENTS = 4096  # events in one sequence
MAX_DIM = 4096  # values in one vector
MAX_PREDICT_STEPS = 64
MAX_SIM_STEPS = 64
MAX_SIM_PATHS = 64
MAX_K = 100
MAX_RELATIONSHIPS = 1000
MAX_NAME = 256  # entity ids, event types, modality names, filter keys and values
MAX_LIST = 1024  # type lists, filter values, causal pairs
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

MAX_ABS_TIME = 1e13  # seconds (epoch milliseconds still fit); beyond, time gaps overflow float32
MAX_ABS_VALUE = 1e6  # per vector value; beyond, squared norms overflow float32

Time = Annotated[float, Field(ge=-MAX_ABS_TIME, le=MAX_ABS_TIME, allow_inf_nan=False)]
Value = Annotated[float, Field(ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Vector = Annotated[list[Value], Field(min_length=1, max_length=MAX_DIM)]
Temperature = Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
RelationshipType = Literal["similar", "complementary", "parent", "child", "sibling", "cross_modal"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


# -- sequences ---------------------------------------------------------------------------------
class EventIn(_In):
    timestamp: Time | None = Field(None, description="seconds (any origin, e.g. epoch); null when unknown")
    event_type: Annotated[str, StringConstraints(max_length=MAX_NAME)] | None = None
    modality: Name = Field(DEFAULT_MODALITY, description="one of the model's modalities (GET /v1/version)")
    embedding: Vector | None = Field(None, description="the event's vector, as wide as its modality; null for none")


class SequenceIn(_In):
    id: Name | None = Field(None, description="entity id (echoed back)")
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS)]


class EmbedRequest(_In):
    sequence: SequenceIn
    include_events: bool = Field(False, description="also return the per-event representations")


class PredictRequest(_In):
    sequence: SequenceIn
    num_steps: Annotated[int, Field(ge=1, le=MAX_PREDICT_STEPS)] = 1
    temperature: Temperature = Field(0.0, description="0: most likely type, median gap; > 0: sampled")
    top_k: Annotated[int, Field(ge=1, le=50)] = 5
    seed: Seed | None = None
    include_embeddings: bool = True


class ConstraintsIn(_In):
    min_delay: Annotated[float, Field(ge=0.0, le=MAX_ABS_TIME, allow_inf_nan=False)] = 0.0
    max_delay: Annotated[float, Field(ge=0.0, le=MAX_ABS_TIME, allow_inf_nan=False)] | None = None
    allowed_types: Annotated[list[Name], Field(max_length=MAX_LIST)] | None = None
    forbidden_types: Annotated[list[Name], Field(max_length=MAX_LIST)] = []
    allowed_modalities: Annotated[list[Name], Field(max_length=MAX_LIST)] | None = None
    causal_order: Annotated[list[tuple[Name, Name]], Field(max_length=MAX_LIST)] = Field([], description="pairs [a, b]: b only after a")
    horizon: Annotated[float, Field(gt=0.0, le=MAX_ABS_TIME, allow_inf_nan=False)] | None = Field(None, description="seconds after the last observed event")


class TargetIn(_In):
    event_type: Name | None = None
    embedding: Vector | None = None
    modality: Name | None = None
    min_cosine: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.9

    @model_validator(mode="after")
    def _one_goal(self) -> TargetIn:
        if self.event_type is None and self.embedding is None:
            raise ValueError("give event_type or embedding (with modality)")
        if self.embedding is not None and self.modality is None:
            raise ValueError("embedding needs modality")
        return self


class SimulateRequest(_In):
    sequence: SequenceIn
    num_steps: Annotated[int, Field(ge=1, le=MAX_SIM_STEPS)] = 10
    num_paths: Annotated[int, Field(ge=1, le=MAX_SIM_PATHS)] = 16
    temperature: Temperature = 1.0
    seed: Seed = 0
    constraints: ConstraintsIn | None = None
    target: TargetIn | None = None
    include_embeddings: bool = False


class AnomalyRequest(_In):
    sequence: SequenceIn


# -- cube --------------------------------------------------------------------------------------
class SimilarRequest(_In):
    modality: Name
    entity_id: Name | None = Field(None, description="query by an entity of the cube (it is left out of the answer)")
    vector: Vector | None = Field(None, description="or query by a vector of the modality's width")
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 10
    filter: Annotated[dict[Name, Name | Annotated[list[Name], Field(min_length=1, max_length=MAX_LIST)]], Field(max_length=32)] | None = Field(
        None, description="hierarchy level -> allowed value or values, e.g. {\"category\": \"c3\"}"
    )

    @model_validator(mode="after")
    def _one_query(self) -> SimilarRequest:
        if (self.entity_id is None) == (self.vector is None):
            raise ValueError("give exactly one of entity_id and vector")
        return self


MAX_QUERY_CHARS = 2000  # = ejc.search.query.MAX_QUERY_CHARS


class SearchRequest(_In):
    query: Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)] = Field(description="what the code does, or identifiers it uses")
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 10
    mode: Literal["hybrid", "dense", "lexical"] = Field("hybrid", description="hybrid: fusion of dense (MiniLM) and BM25 rankings")
    show_code: bool = Field(False, description="add each result's lines as `code`")


class RelationshipsRequest(_In):
    entity_id: Name = Field(description="an entity id, or for parent/child/sibling also a hierarchy node \"level=value\"")
    type: RelationshipType
    confidence_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    modality: Name | None = Field(None, description="similar / cross_modal: search from this modality only")
    limit: Annotated[int, Field(ge=1, le=MAX_RELATIONSHIPS)] = 100


# -- responses ---------------------------------------------------------------------------------
class EmbedResponse(BaseModel):
    model_version: str
    id: str | None
    dim: int
    pooled: list[float]
    events: list[list[float]] | None = None


class PredictedEventOut(BaseModel):
    timestamp: float
    gap: float
    event_type: str | None
    type_probs: dict[str, float]
    modality: str
    modality_probs: dict[str, float]
    embedding: list[float] | None = None
    if_continuing: str | None = Field(None, description="the most likely type if the entity goes on (never END); for a predicted END (\"<end>\"), gap and timestamp say when that event would come")


class PredictResponse(BaseModel):
    model_version: str
    id: str | None
    events: list[PredictedEventOut]


class SimulateResponse(BaseModel):
    model_version: str
    id: str | None
    paths: list[list[PredictedEventOut]]
    reached: list[bool]
    reached_at: list[int | None]
    stopped: list[str]
    target_probability: float
    summary: dict[str, Any]


class AnomalyResponse(BaseModel):
    model_version: str
    id: str | None
    calibrated: bool = Field(description="false: the model has no calibration, thresholds and verdicts are null")
    event_scores: list[float | None]
    components: dict[str, list[float | None]]
    event_threshold: float | None
    sequence_score: float
    sequence_threshold: float | None
    anomalous_events: list[int] = Field(description="positions (request order) scoring above event_threshold")
    sequence_anomalous: bool | None


class NeighborOut(BaseModel):
    entity_id: str
    score: float
    modality: str


class SimilarResponse(BaseModel):
    index_version: str
    modality: str
    neighbors: list[NeighborOut]


class RelationshipOut(BaseModel):
    source: str
    target: str
    type: str
    confidence: float
    evidence: dict[str, Any]


class RelationshipsResponse(BaseModel):
    index_version: str
    relationships: list[RelationshipOut]


class SearchResultOut(BaseModel):
    path: str = Field(description="relative to the indexed root")
    start: int = Field(description="first line, 1-based")
    end: int = Field(description="last line, inclusive")
    score: float = Field(description="higher is better within one mode (hybrid: a fusion score)")
    code: str | None = Field(None, description="the lines (show_code only)")


class SearchResponse(BaseModel):
    """The shape of ``ejc search query --json``."""

    query: str
    results: list[SearchResultOut]


class ModelInfo(BaseModel):
    source: str = Field(description="checkpoint directory or models:/ URI it was loaded from")
    version: str = Field(description="registry NAME/VERSION, or step and content hash of a directory")
    step: int | None
    modalities: dict[str, int] = Field(description="modality -> vector width (0: events without vectors)")
    event_types: list[str]
    calibrated: bool
    loaded_at: float
    load_error: str | None = Field(None, description="the last failed swap (the previous version kept serving)")


class CubeInfo(BaseModel):
    source: str
    version: str
    entities: int
    modalities: list[str]
    loaded_at: float
    load_error: str | None = None


class SearchInfo(BaseModel):
    source: str = Field(description="the INDEX directory")
    version: str = Field(description="the published index version loaded (INDEX/CURRENT when loaded)")
    root: str = Field(description="the directory that was indexed")
    files: int
    snippets: int
    embedder: str
    loaded_at: float
    load_error: str | None = None


class VersionResponse(BaseModel):
    model: ModelInfo | None
    cube: CubeInfo | None
    search: SearchInfo | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    model: bool | None = Field(description="null: not configured")
    cube: bool | None = Field(description="null: not configured")
    search: bool | None = Field(None, description="null: not configured")


class ErrorItem(BaseModel):
    field: str
    problem: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []


# -- conversions -------------------------------------------------------------------------------
def to_sequence(req: SequenceIn, modality_dims: Mapping[str, int], modalities: Collection[str], field: str = "sequence") -> EventSequence:
    """The :class:`EventSequence` of ``req`` for a model with these modalities and widths.

    ``modality_dims``: modality -> vector width of the modalities that take vectors.
    Raises :class:`RequestError` naming the first bad field.
    """
    last_t = -math.inf
    last_i = -1
    for i, ev in enumerate(req.events):
        at = f"{field}.events[{i}]"
        if ev.modality not in modalities:
            raise RequestError(f"{at}.modality", f"unknown modality {ev.modality!r}; the model knows {sorted(modalities)}")
        if ev.embedding is not None:
            dim = modality_dims.get(ev.modality)
            if dim is None:
                raise RequestError(f"{at}.embedding", f"modality {ev.modality!r} takes no vectors in this model; send the event without an embedding")
            if len(ev.embedding) != dim:
                raise RequestError(f"{at}.embedding", f"has {len(ev.embedding)} values but modality {ev.modality!r} takes {dim}")
        if ev.timestamp is not None:
            if ev.timestamp < last_t:
                raise RequestError(f"{at}.timestamp", f"{ev.timestamp} is earlier than events[{last_i}].timestamp {last_t}; send events in time order")
            last_t, last_i = ev.timestamp, i
    timed = last_i >= 0
    types = [ev.event_type for ev in req.events]
    return EventSequence(
        embeddings=[None if ev.embedding is None else np.asarray(ev.embedding, np.float32) for ev in req.events],
        timestamps=[math.nan if ev.timestamp is None else ev.timestamp for ev in req.events] if timed else None,
        modality=[ev.modality for ev in req.events],
        event_types=types if any(t is not None for t in types) else None,
        id=req.id,
    )


def simulation_options(req: SimulateRequest, event_types: Collection[str], modality_dims: Mapping[str, int], modalities: list[str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(constraints, target_state)`` keyword dicts for ``EventJEPA.simulate``, checked against the model."""
    from ejc.infer.simulate import Constraints

    constraints = None
    if req.constraints is not None:
        c = req.constraints
        constraints = {
            "min_delay": c.min_delay,
            "max_delay": c.max_delay,
            "allowed_types": None if c.allowed_types is None else set(c.allowed_types),
            "forbidden_types": set(c.forbidden_types),
            "allowed_modalities": None if c.allowed_modalities is None else set(c.allowed_modalities),
            "causal_order": [tuple(p) for p in c.causal_order],
            "horizon": c.horizon,
        }
        try:
            Constraints(**constraints).check(event_types, modalities)
        except EjcError as e:
            raise RequestError("constraints", str(e)) from None
    target = None
    if req.target is not None:
        t = req.target
        if t.event_type is not None and t.event_type not in set(event_types):
            raise RequestError("target.event_type", f"unknown event type {t.event_type!r}: the model never saw it")
        if t.embedding is not None:
            dim = modality_dims.get(str(t.modality))
            if dim is None:
                raise RequestError("target.modality", f"modality {t.modality!r} takes no vectors in this model; it knows {sorted(modality_dims)}")
            if len(t.embedding) != dim:
                raise RequestError("target.embedding", f"has {len(t.embedding)} values but modality {t.modality!r} takes {dim}")
        target = {
            "event_type": t.event_type,
            "embedding": None if t.embedding is None else np.asarray(t.embedding, np.float32),
            "modality": t.modality,
            "min_cosine": t.min_cosine,
        }
    return constraints, target


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for NaN / infinity (JSON has neither)."""
    v = float(x)
    return v if math.isfinite(v) else None


def _floats(a: Any) -> list[float | None]:
    return [finite_or_none(v) for v in np.asarray(a, np.float64).ravel()]


def _vector(a: Any) -> list[float]:
    return np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0).tolist()


def predicted_event_out(ev: Any, include_embedding: bool = True) -> PredictedEventOut:
    """A :class:`~ejc.infer.event_jepa.PredictedEvent` as its response model."""
    return PredictedEventOut(
        timestamp=float(ev.timestamp),
        gap=float(ev.gap),
        event_type=ev.event_type,
        type_probs={str(k): float(v) for k, v in ev.type_probs.items()},
        modality=str(ev.modality),
        modality_probs={str(k): float(v) for k, v in ev.modality_probs.items()},
        embedding=_vector(ev.embedding) if include_embedding and ev.embedding is not None else None,
        if_continuing=getattr(ev, "if_continuing", None),
    )


def anomaly_out(res: Any, calibrated: bool, model_version: str, seq_id: str | None) -> AnomalyResponse:
    """An :class:`~ejc.infer.anomaly.AnomalyResult` as its response model (non-finite values -> null)."""
    ev_thr = finite_or_none(res.event_threshold) if calibrated else None
    seq_thr = finite_or_none(res.sequence_threshold) if calibrated else None
    scores = np.asarray(res.event_scores, np.float64)
    return AnomalyResponse(
        model_version=model_version,
        id=seq_id,
        calibrated=calibrated,
        event_scores=_floats(scores),
        components={str(k): _floats(v) for k, v in res.components.items()},
        event_threshold=ev_thr,
        sequence_score=float(np.nan_to_num(res.sequence_score)),
        sequence_threshold=seq_thr,
        anomalous_events=[] if ev_thr is None else np.flatnonzero(np.nan_to_num(scores, nan=-np.inf) > ev_thr).tolist(),
        sequence_anomalous=None if seq_thr is None else bool(res.sequence_score > seq_thr),
    )


def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars/arrays, tuples and sets made JSON types and non-finite floats null."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in (sorted(x, key=str) if isinstance(x, (set, frozenset)) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return finite_or_none(x)
    if x is None or isinstance(x, str):
        return x
    return str(x)


__all__ = [
    "AnomalyRequest",
    "AnomalyResponse",
    "CubeInfo",
    "EmbedRequest",
    "EmbedResponse",
    "ErrorResponse",
    "EventIn",
    "HealthResponse",
    "ModelInfo",
    "PredictRequest",
    "PredictResponse",
    "RelationshipsRequest",
    "RelationshipsResponse",
    "SearchInfo",
    "SearchRequest",
    "SearchResponse",
    "SearchResultOut",
    "SequenceIn",
    "SimilarRequest",
    "SimilarResponse",
    "SimulateRequest",
    "SimulateResponse",
    "VersionResponse",
    "anomaly_out",
    "jsonable",
    "predicted_event_out",
    "simulation_options",
    "to_sequence",
]
