"""The application builder: ``serve run serve/config.yaml``, ``serve deploy serve/config.yaml``,
``serve run serve.app:build_app model=DIR cube=DIR search=INDEX``, or ``serve.run(build_app({...}))``.

Local paths are made absolute here (where the builder runs), so replicas find them whatever
their working directory. The model and cube sources and the batching settings become the
deployments' ``user_config``; a config that overrides ``deployments[].user_config`` and is
deployed again swaps the model/cube (or batching) in place through ``reconfigure``, without
restarting replicas or dropping requests (see ``serve/config.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray.serve import Application

from ejc.errors import ConfigError
from serve.schemas import DEFAULT_MAX_BODY_BYTES


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (the ``args:`` of an application in the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="checkpoint/run directory, or models:/NAME/VERSION, models:/NAME/latest, models:/NAME@ALIAS")
    tracking_uri: str | None = Field(None, description="MLflow URI for models:/ (default sqlite:///mlflow.db in the builder's working directory)")
    cube: str | None = Field(None, description="EmbeddingCube directory (EmbeddingCube.save)")
    search: str | None = Field(None, description="snippet index directory (`ejc search index DIR --out INDEX`), served at POST /v1/search")
    api_keys: list[str] = Field([], description="accepted API keys; with none here and none in api_keys_env, no authentication")
    api_keys_env: str | None = Field("EJC_API_KEYS", description="environment variable with comma-separated keys, read by the ingress replicas")
    max_batch_size: int = Field(16, ge=1, le=256, description="model calls batched per forward pass (1: no batching)")
    batch_wait_timeout_s: float = Field(0.005, ge=0.0, le=1.0, description="how long a batch waits to fill")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: Any) -> Any:
        return [k for k in v.split(",") if k.strip()] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _something_to_serve(self) -> AppArgs:
        if self.model is None and self.cube is None and self.search is None:
            raise ValueError("give model (a checkpoint directory or models:/NAME/VERSION), cube (an EmbeddingCube directory) and/or search (an `ejc search index` directory)")
        return self


def _local(path: str, what: str) -> str:
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise ConfigError(f"{what} {path!r} does not exist (resolved to {p})")
    return str(p)


def model_user_config(args: AppArgs) -> dict[str, Any]:
    """The EventModel ``user_config`` for ``args``."""
    from ejc.train.mlflow_tracker import default_tracking_uri

    assert args.model is not None
    registry = args.model.startswith("models:/")
    return {
        "model": args.model if registry else _local(args.model, "model"),
        "tracking_uri": (args.tracking_uri or default_tracking_uri()) if registry else None,
        "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_s": args.batch_wait_timeout_s,
    }


def cube_user_config(args: AppArgs) -> dict[str, Any]:
    """The Cube ``user_config`` for ``args``."""
    assert args.cube is not None
    return {"cube": _local(args.cube, "cube")}


def search_user_config(args: AppArgs) -> dict[str, Any]:
    """The Search ``user_config`` for ``args``."""
    assert args.search is not None
    return {"index": _local(args.search, "search index")}


def build_app(args: AppArgs | dict[str, Any]) -> Application:
    """The ejc application: Ingress -> EventModel (if ``model``), Cube (if ``cube``) and Search (if ``search``)."""
    from serve.deployments import Cube, EventModel, Ingress, Search

    a = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
    model = EventModel.options(user_config=model_user_config(a)).bind() if a.model is not None else None
    cube = Cube.options(user_config=cube_user_config(a)).bind() if a.cube is not None else None
    search = Search.options(user_config=search_user_config(a)).bind() if a.search is not None else None
    return Ingress.bind(model, cube, {"api_keys": a.api_keys, "api_keys_env": a.api_keys_env, "max_body_bytes": a.max_body_bytes}, search)


CONFIG_PATH = Path(__file__).with_name("config.yaml")


def deploy_config(args: dict[str, Any] | None = None, user_configs: dict[str, dict[str, Any]] | None = None, *, host: str | None = None, port: int | None = None, path: str | Path = CONFIG_PATH) -> Any:
    """The Serve config at ``path`` (default ``serve/config.yaml``) as a ``ServeDeploySchema``,
    with ``args`` merged into the application's args, ``user_configs`` (deployment name ->
    user_config) set on its deployments, and the HTTP host/port replaced when given."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    cfg = yaml.safe_load(Path(path).read_text())
    if host is not None:
        cfg["http_options"]["host"] = host
    if port is not None:
        cfg["http_options"]["port"] = int(port)
    app = cfg["applications"][0]
    app["args"].update(args or {})
    for d in app.get("deployments", []):
        if user_configs and d["name"] in user_configs:
            d["user_config"] = user_configs[d["name"]]
    return ServeDeploySchema.model_validate(cfg)


def deploy(config: Any) -> Any:
    """Start Serve with ``config``'s HTTP options and apply it, waiting until it runs: what
    ``serve run serve/config.yaml`` does on the current Ray (and, applied again, ``serve deploy``).
    Returns the Serve client (``client.deploy_apps(new_config, _blocking=True)`` re-applies)."""
    from ray.serve._private import api as serve_api  # the entry point the `serve` CLI uses

    client = serve_api.serve_start(http_options=config.http_options.model_dump(), proxy_location=config.proxy_location)
    client.deploy_apps(config, _blocking=True)
    return client


__all__ = ["AppArgs", "build_app", "cube_user_config", "deploy", "deploy_config", "model_user_config", "search_user_config"]
