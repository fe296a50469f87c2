"""Ray Serve deployments: the event model, the cube, the snippet index, and the HTTP ingress in front of them.

``EventModel``, ``Cube`` and ``Search`` take everything they serve from their ``user_config``, so a new
``user_config`` (``serve deploy`` of a config whose ``deployments[].user_config`` changed) swaps
the model or index version in place through ``reconfigure``: the new version is loaded beside
the old one (in a thread, the replica keeps answering), then one reference is replaced. Requests
already converted against the old version finish on it, so none is dropped; a version that
fails to load leaves the old one serving and is reported as ``load_error``. Anything else that
changes (code, builder args) replaces the replicas; ``max_surge_percent=100`` keeps the old ones
serving until their replacements are ready.

Model calls are grouped by ``@serve.batch`` (``max_batch_size`` / ``batch_wait_timeout_s`` from
the user_config; 1 turns batching off) and run in a worker thread so the replica's event loop
stays free for health checks, reconfiguration and queueing. Each request is validated and
converted before it joins a batch, so one bad request never fails its batch neighbours.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from ray import serve

import numpy as np

from ejc.errors import CubeError, EjcError, RequestError, SearchError, UnknownEntityError, UnknownModalityError
from serve.api import api_keys, make_api
from serve.loading import load_cube, load_model, load_search
from serve.schemas import (
    AnomalyRequest,
    AnomalyResponse,
    EmbedRequest,
    EmbedResponse,
    HealthResponse,
    ModelInfo,
    NeighborOut,
    PredictRequest,
    PredictResponse,
    RelationshipOut,
    RelationshipsRequest,
    RelationshipsResponse,
    SearchRequest,
    SearchResponse,
    SimilarRequest,
    SimilarResponse,
    SimulateRequest,
    SimulateResponse,
    VersionResponse,
    anomaly_out,
    jsonable,
    predicted_event_out,
    simulation_options,
    to_sequence,
)

logger = logging.getLogger("ray.serve")


class ModelConfig(BaseModel):
    """``user_config`` of :class:`EventModel`."""

    model: str = Field(description="checkpoint/run directory, or models:/NAME/VERSION | models:/NAME/latest | models:/NAME@ALIAS")
    tracking_uri: str | None = Field(None, description="MLflow tracking/registry URI for models:/ (default sqlite:///mlflow.db in the working directory)")
    revision: str | int | None = Field(None, description="change it to reload the same source (e.g. models:/NAME/latest)")
    max_batch_size: int = Field(16, ge=1, le=256)
    batch_wait_timeout_s: float = Field(0.005, ge=0.0, le=1.0)


class CubeConfig(BaseModel):
    """``user_config`` of :class:`Cube`."""

    cube: str = Field(description="directory written by EmbeddingCube.save")
    mmap: bool = Field(True, description="memory-map the indices read-only (replicas share the page cache)")
    revision: str | int | None = None


class SearchConfig(BaseModel):
    """``user_config`` of :class:`Search`."""

    index: str = Field(description="directory written by `ejc search index DIR --out INDEX` (its CURRENT version is loaded)")
    mmap: bool = Field(True, description="memory-map the vector and BM25 indices read-only")
    revision: str | int | None = Field(None, description="change it to load the version a re-run of `ejc search index` published")


@dataclass
class _Job:
    model: Any  # the EventJEPA this request was converted for
    info: ModelInfo
    seq: Any  # EventSequence
    req: Any


def _answers_errors(method: Any) -> Any:
    """A deployment method that returns a :class:`RequestError` (re-raised by the ingress as a
    4xx answer) instead of raising it, so bad requests do not log replica tracebacks."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except RequestError as e:
            return e

    return wrapper


class _HotSwap:
    """One loaded version at a time. ``reconfigure`` loads the configured source in a thread and
    swaps it in; when the source is unchanged nothing reloads; a failed swap keeps serving the
    previous version and reports the error as ``info().load_error`` (a replica with nothing
    loaded yet does not start: the error is in its log)."""

    config_model: Any  # the pydantic ``user_config`` class
    what = ""  # the noun in logs and errors: "model", "cube", "search index"
    field = ""  # the error field of a request that arrives before anything is loaded

    def __init__(self) -> None:
        self._current: tuple[Any, Any] | None = None
        self._config: Any = None
        self._load_error: str | None = None

    def _source(self, cfg: Any) -> tuple[Any, ...]:
        """What, when it changes, makes a reload; its first item names the source in messages."""
        raise NotImplementedError

    def _load(self, cfg: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        await self._swap(self.config_model.model_validate(user_config))

    async def _swap(self, cfg: Any) -> None:
        old, self._config = self._config, cfg
        if old is not None and self._current is not None and self._source(old) == self._source(cfg):
            return
        src = self._source(cfg)[0]
        try:
            obj, info = await asyncio.to_thread(self._load, cfg)
        except Exception as e:
            if self._current is None:
                raise
            self._load_error = f"{src}: {e}"
            logger.error("%s swap to %s failed, still serving %s: %s", self.what, src, self._current[1].version, e)
            return
        self._current = (obj, info)
        self._load_error = None
        logger.info("serving %s %s from %s", self.what, info.version, info.source)

    def check_health(self) -> None:
        if self._current is None:
            raise RuntimeError(f"no {self.what} loaded")

    def _now(self) -> tuple[Any, Any]:
        if self._current is None:
            raise RequestError(self.field, f"no {self.what} loaded yet", status=503)
        return self._current

    @_answers_errors
    async def info(self) -> Any:
        _, info = self._now()
        return info.model_copy(update={"load_error": self._load_error})


@serve.deployment(name="EventModel", max_surge_percent=100, max_ongoing_requests=256, max_queued_requests=2048, ray_actor_options={"num_cpus": 1}, health_check_period_s=10, health_check_timeout_s=60, graceful_shutdown_timeout_s=30)
class EventModel(_HotSwap):
    """Embed, predict, simulate and score anomalies with one EventJEPA version at a time."""

    config_model, what, field = ModelConfig, "model", "model"

    def __init__(self) -> None:
        super().__init__()
        self._simulating = asyncio.Semaphore(1)  # simulations are long: one at a time per replica

    def _source(self, cfg: ModelConfig) -> tuple[Any, ...]:
        return (cfg.model, cfg.tracking_uri, cfg.revision)  # not the batching: that changes in place

    def _load(self, cfg: ModelConfig) -> tuple[Any, Any]:
        return load_model(cfg.model, cfg.tracking_uri)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        cfg = ModelConfig.model_validate(user_config)
        for handler in (self._embed_batch, self._predict_batch, self._anomaly_batch):
            handler.set_max_batch_size(cfg.max_batch_size)
            handler.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        await self._swap(cfg)

    def _sequence(self, model: Any, req: Any) -> Any:
        return to_sequence(req.sequence, model.spec.modality_dims, model.spec.modalities)

    @staticmethod
    def _need_heads(model: Any) -> None:
        if model.model.heads is None:
            raise RequestError("model", "this model was trained without next-event heads (objective.future=false); serve a model trained with them", status=501)

    # -- embed -----------------------------------------------------------------------------
    @_answers_errors
    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        model, info = self._now()
        return _raise_if_error(await self._embed_batch(_Job(model, info, self._sequence(model, req), req)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, jobs: list[_Job]) -> list[Any]:
        return await asyncio.to_thread(_run_grouped, jobs, _embed_group)

    # -- predict ---------------------------------------------------------------------------
    @_answers_errors
    async def predict(self, req: PredictRequest) -> PredictResponse:
        model, info = self._now()
        self._need_heads(model)
        return _raise_if_error(await self._predict_batch(_Job(model, info, self._sequence(model, req), req)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, jobs: list[_Job]) -> list[Any]:
        return await asyncio.to_thread(_run_grouped, jobs, _predict_group)

    # -- anomaly ---------------------------------------------------------------------------
    @_answers_errors
    async def anomaly(self, req: AnomalyRequest) -> AnomalyResponse:
        model, info = self._now()
        self._need_heads(model)
        return _raise_if_error(await self._anomaly_batch(_Job(model, info, self._sequence(model, req), req)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _anomaly_batch(self, jobs: list[_Job]) -> list[Any]:
        return await asyncio.to_thread(_run_grouped, jobs, _anomaly_group)

    # -- simulate (one request is already a batch of paths) ---------------------------------
    @_answers_errors
    async def simulate(self, req: SimulateRequest) -> SimulateResponse:
        model, info = self._now()
        self._need_heads(model)
        seq = self._sequence(model, req)
        constraints, target = simulation_options(req, model.spec.vocab.types, model.spec.modality_dims, model.spec.modalities)
        async with self._simulating:
            res = await asyncio.to_thread(model.simulate, seq, req.num_steps, req.num_paths, constraints, target, req.temperature, req.seed)
        emb = req.include_embeddings
        return SimulateResponse(
            model_version=info.version,
            id=req.sequence.id,
            paths=[[predicted_event_out(ev, emb) for ev in p] for p in res.paths],
            reached=list(res.reached),
            reached_at=list(res.reached_at),
            stopped=list(res.stopped),
            target_probability=res.target_probability,
            summary=jsonable(res.summary()),
        )


def _raise_if_error(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


def _run_grouped(jobs: list[_Job], run: Any) -> list[Any]:
    """Run ``run(jobs_of_one_group)`` per group of jobs that can share a forward pass; an error
    (an exception object in the result list) stays with its group."""
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, j in enumerate(jobs):
        groups[(id(j.model), *_group_key(j.req))].append(i)
    out: list[Any] = [None] * len(jobs)
    for idx in groups.values():
        group = [jobs[i] for i in idx]
        try:
            results = run(group)
        except EjcError as e:
            results = [RequestError("sequence", str(e))] * len(group)
        except Exception as e:  # a bug: answer 500 for this group only, keep the replica serving
            logger.exception("model call failed")
            results = [e] * len(group)
        for i, r in zip(idx, results):
            out[i] = r
    return out


def _group_key(req: Any) -> tuple[Any, ...]:
    if isinstance(req, PredictRequest):
        # greedy requests with the same horizon share forward passes; sampled ones keep their own seed
        return (req.num_steps, req.top_k) if req.temperature == 0 else (id(req),)
    if isinstance(req, EmbedRequest):
        return (req.include_events,) if not req.include_events else (id(req),)
    return ()


def _embed_group(jobs: list[_Job]) -> list[EmbedResponse]:
    model = jobs[0].model
    if jobs[0].req.include_events:
        outs = [model.process(j.seq) for j in jobs]
        pooled, events = [o.pooled for o in outs], [o.events.tolist() for o in outs]
    else:
        pooled, events = list(model.embed_sequences([j.seq for j in jobs], batch_size=len(jobs))), [None] * len(jobs)
    return [EmbedResponse(model_version=j.info.version, id=j.req.sequence.id, dim=int(len(p)), pooled=[float(v) for v in p], events=e) for j, p, e in zip(jobs, pooled, events)]


def _predict_group(jobs: list[_Job]) -> list[PredictResponse]:
    model, r = jobs[0].model, jobs[0].req
    preds = model.predict_next_batch([j.seq for j in jobs], r.num_steps, r.temperature, r.top_k, r.seed)
    return [PredictResponse(model_version=j.info.version, id=j.req.sequence.id, events=[predicted_event_out(ev, j.req.include_embeddings) for ev in p]) for j, p in zip(jobs, preds)]


def _anomaly_group(jobs: list[_Job]) -> list[AnomalyResponse]:
    return [anomaly_out(j.model.anomaly_scores(j.seq), j.model.calibration is not None, j.info.version, j.req.sequence.id) for j in jobs]


@serve.deployment(name="Cube", max_surge_percent=100, max_ongoing_requests=64, max_queued_requests=2048, ray_actor_options={"num_cpus": 0}, health_check_period_s=10, health_check_timeout_s=60, graceful_shutdown_timeout_s=30)
class Cube(_HotSwap):
    """Nearest neighbours and relationships from one EmbeddingCube version at a time."""

    config_model, what, field = CubeConfig, "cube", "cube"

    def _source(self, cfg: CubeConfig) -> tuple[Any, ...]:
        return (cfg.cube, cfg.mmap, cfg.revision)

    def _load(self, cfg: CubeConfig) -> tuple[Any, Any]:
        return load_cube(cfg.cube, cfg.mmap)

    @_answers_errors
    async def similar(self, req: SimilarRequest) -> SimilarResponse:
        cube, info = self._now()
        _check_modality(cube, req.modality)
        if req.entity_id is not None:
            _check_entity(cube, req.entity_id)
            query: Any = req.entity_id
        else:
            dim = cube.dim(req.modality)
            if len(req.vector) != dim:
                raise RequestError("vector", f"has {len(req.vector)} values but modality {req.modality!r} takes {dim}")
            query = np.asarray(req.vector, np.float32)
        try:
            found = await asyncio.to_thread(cube.find_similar, query, req.modality, req.k, req.filter)
        except UnknownModalityError as e:  # the entity has no vector in this modality
            raise RequestError("entity_id", str(e)) from None
        except CubeError as e:  # what is left after the checks above: the filter
            raise RequestError("filter" if req.filter else ("entity_id" if req.entity_id is not None else "vector"), str(e)) from None
        return SimilarResponse(index_version=info.version, modality=req.modality, neighbors=[NeighborOut(entity_id=str(n.entity_id), score=float(n.score), modality=str(n.modality)) for n in found])

    @_answers_errors
    async def relationships(self, req: RelationshipsRequest) -> RelationshipsResponse:
        cube, info = self._now()
        if not (req.type in ("parent", "child", "sibling") and "=" in req.entity_id):  # hierarchy nodes are "level=value"
            _check_entity(cube, req.entity_id)
        if req.modality is not None:
            _check_modality(cube, req.modality)
        try:
            found = await asyncio.to_thread(functools.partial(cube.find_relationships, req.entity_id, req.type, req.confidence_threshold, modality=req.modality, k=req.limit))
        except UnknownEntityError as e:
            raise RequestError("entity_id", str(e), status=404) from None
        except CubeError as e:  # e.g. no co-occurrence data or hierarchy for this type yet
            raise RequestError("type", str(e)) from None
        return RelationshipsResponse(
            index_version=info.version,
            relationships=[RelationshipOut(source=str(r.source), target=str(r.target), type=str(r.type), confidence=float(r.confidence), evidence=jsonable(r.evidence)) for r in found[: req.limit]],
        )


def _check_modality(cube: Any, modality: str) -> None:
    if modality not in cube.modalities:
        raise RequestError("modality", f"unknown modality {modality!r}; the cube has {cube.modalities}")


def _check_entity(cube: Any, entity_id: str) -> None:
    if entity_id not in cube:
        raise RequestError("entity_id", f"unknown entity {entity_id!r}", status=404)


@serve.deployment(name="Search", max_surge_percent=100, max_ongoing_requests=64, max_queued_requests=2048, ray_actor_options={"num_cpus": 0}, health_check_period_s=10, health_check_timeout_s=60, graceful_shutdown_timeout_s=30)
class Search(_HotSwap):
    """Snippet search (``ejc search query``) over one published index version at a time."""

    config_model, what, field = SearchConfig, "search index", "search"

    def _source(self, cfg: SearchConfig) -> tuple[Any, ...]:
        return (cfg.index, cfg.mmap, cfg.revision)

    def _load(self, cfg: SearchConfig) -> tuple[Any, Any]:
        return load_search(cfg.index, cfg.mmap)

    @_answers_errors
    async def search(self, req: SearchRequest) -> SearchResponse:
        from ejc.search.query import search_response

        index, _ = self._now()
        try:
            hits = await asyncio.to_thread(index.query, req.query, req.k, req.mode)
        except SearchError as e:  # e.g. a query of only whitespace
            raise RequestError("query", str(e)) from None
        texts = [index.text(h) for h in hits] if req.show_code else None
        return SearchResponse.model_validate(search_response(req.query, hits, texts))


class IngressConfig(BaseModel):
    api_keys: list[str] = []
    api_keys_env: str | None = "EJC_API_KEYS"
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)


@serve.deployment(name="Ingress", max_surge_percent=100, max_ongoing_requests=512, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    """HTTP front: validates, authenticates and routes requests to the model and cube deployments."""

    def __init__(self, model: Any | None, cube: Any | None, config: dict[str, Any], search: Any | None = None) -> None:
        self.handles = {"model": model, "cube": cube, "search": search}
        self.config = IngressConfig.model_validate(config)
        self.keys = api_keys(self.config.api_keys, self.config.api_keys_env)

    def __serve_build_asgi_app__(self) -> Any:
        return make_api(self, self.config.max_body_bytes, self.keys)

    async def call(self, target: str, method: str, req: Any) -> Any:
        handle = self.handles[target]
        if handle is None:
            raise RequestError(target, f"this server has no {target} configured", status=503)
        return _raise_if_error(await getattr(handle, method).remote(req))

    async def versions(self) -> VersionResponse:
        out = {}
        for name in ("model", "cube", "search"):
            h = self.handles[name]
            out[name] = None if h is None else _raise_if_error(await h.info.remote())
        return VersionResponse(**out)

    async def health(self) -> HealthResponse:
        state: dict[str, bool | None] = {}
        for name, h in self.handles.items():
            if h is None:
                state[name] = None
                continue
            try:
                state[name] = not isinstance(await asyncio.wait_for(h.info.remote(), timeout=5.0), RequestError)
            except Exception:
                state[name] = False
        ok = all(v is not False for v in state.values())
        return HealthResponse(status="ok" if ok else "unavailable", **state)


__all__ = ["Cube", "CubeConfig", "EventModel", "Ingress", "IngressConfig", "ModelConfig", "Search", "SearchConfig"]
