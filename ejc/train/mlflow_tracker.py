"""MLflow adapter for the :class:`~ejc.train.tracking.Tracker` interface (rank 0 only).

Uses an explicit ``MlflowClient`` (no global fluent state). With no tracking URI the embedded
default is a SQLite store ``mlflow.db`` in the working directory (artifacts under
``./mlartifacts``), so runs and the model registry work without a server; pass
``http://host:port`` for a tracking server.

``register_model`` uploads a run directory's final checkpoint as the run's ``model`` artifact and
creates a model version in the registry whose tags carry the resolved config and the event-table
schema the model reads (its signature).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ejc.errors import MissingDependencyError

DEFAULT_DB = "mlflow.db"
MAX_PARAM_LEN = 6000


def default_tracking_uri(workdir: str | os.PathLike[str] = ".") -> str:
    return f"sqlite:///{Path(workdir).resolve() / DEFAULT_DB}"


class MLflowTracker:
    def __init__(self, tracking_uri: str | None = None, experiment: str = "ejc", run_name: str | None = None, tags: dict[str, str] | None = None, run_id: str | None = None):
        """Start a run in ``experiment``, or attach to the existing ``run_id`` (e.g. from a Ray worker)."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:  # pragma: no cover - mlflow is a core dependency
            raise MissingDependencyError("mlflow", "dev", "experiment tracking") from e
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        if run_id is not None:
            run = self.client.get_run(run_id)
            self.experiment_id, self.run_id, self.artifact_uri = run.info.experiment_id, run_id, run.info.artifact_uri
            return
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            artifact_location = None
            if self.tracking_uri.startswith("sqlite:///"):
                artifact_location = (Path(self.tracking_uri[len("sqlite:///") :]).parent / "mlartifacts" / experiment).as_uri()
            exp_id = self.client.create_experiment(experiment, artifact_location=artifact_location)
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        run = self.client.create_run(exp_id, run_name=run_name, tags=tags or {})
        self.run_id: str = run.info.run_id
        self.artifact_uri: str = run.info.artifact_uri

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(str(k), float(v), ts, int(step)) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def register_model(self, name: str, checkpoint_dir: str | os.PathLike[str], extra_tags: dict[str, Any] | None = None) -> str:
        """Upload ``checkpoint_dir`` (a step directory or an ``ejc train`` model directory) as artifact ``model`` and register it; returns the version."""
        from mlflow.exceptions import MlflowException

        from ejc.data.schema import EVENT_SCHEMA

        from ejc.train.checkpoint import resolve_checkpoint

        src = Path(checkpoint_dir)  # a step directory, or a whole model directory from `ejc train`
        step_dir = resolve_checkpoint(src) or src
        self.client.log_artifacts(self.run_id, str(src), "model")
        meta = json.loads((step_dir / "config.json").read_text())
        try:
            self.client.create_registered_model(name, description="Event-JEPA model (ejc)")
        except MlflowException as e:
            if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
                raise
        tags = {
            "config": json.dumps(meta["config"]),
            "data_spec.modalities": json.dumps(meta["data_spec"]["modality_dims"]),
            "event_schema": EVENT_SCHEMA.to_string(show_field_metadata=False),
            "step": str(meta["step"]),
            "ejc_version": str(meta.get("ejc_version")),
            **{k: str(v) for k, v in (extra_tags or {}).items()},
        }
        mv = self.client.create_model_version(name, source=f"{self.artifact_uri}/model", run_id=self.run_id, tags=tags)
        return str(mv.version)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def download_registered_model(uri: str, dst: str | os.PathLike[str], tracking_uri: str | None = None) -> tuple[Path, dict[str, str]]:
    """Download a registered model version into ``dst``; returns ``(model_dir, identity)``.

    ``uri``: ``models:/NAME/VERSION``, ``models:/NAME/latest`` (highest version) or
    ``models:/NAME@ALIAS``. ``model_dir`` is loadable with ``EventJEPA.from_pretrained``; the
    run's ``calibration.json`` (logged beside the model by ``ejc pretrain`` and the quickstart)
    is copied into it when present. ``identity``: ``name``, ``version``, ``run_id``.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ejc.errors import CheckpointError

    if not uri.startswith("models:/") or not uri[len("models:/") :].strip("/"):
        raise CheckpointError(f"{uri!r} is not a registry URI; expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS")
    ref = uri[len("models:/") :].strip("/")
    uri_db = tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri_db, registry_uri=uri_db)
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = ref.partition("/")
            if version in ("", "latest"):
                versions = client.search_model_versions(f"name='{name}'")
                if not versions:
                    raise CheckpointError(f"{uri}: the registry at {uri_db} has no versions of model {name!r}")
                mv = max(versions, key=lambda v: int(v.version))
            else:
                mv = client.get_model_version(name, version)
        if not mv.run_id:
            raise CheckpointError(f"{uri}: model version {mv.version} has no run to download its files from")
        out = Path(dst)
        out.mkdir(parents=True, exist_ok=True)
        model_dir = Path(client.download_artifacts(mv.run_id, "model", str(out)))
        if any(a.path == "calibration.json" for a in client.list_artifacts(mv.run_id)):
            client.download_artifacts(mv.run_id, "calibration.json", str(model_dir))
    except MlflowException as e:
        raise CheckpointError(f"{uri}: cannot load it from the registry at {uri_db}: {e.message}") from e
    return model_dir, {"name": mv.name, "version": str(mv.version), "run_id": str(mv.run_id)}


def _param_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."


__all__ = ["MLflowTracker", "default_tracking_uri", "download_registered_model"]
