"""Configs: nested dataclasses with named presets, YAML files and ``key=value`` overrides.

``load_config("tiny", ["model.d_model=32", "train.steps=10"])`` starts from a preset (or a YAML
file whose optional ``preset:`` key names the base), applies overrides in order, type-checks
every value and runs each section's ``problems()``: all problems are raised together in one
:class:`~ejc.errors.ConfigError`, before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ejc.errors import ConfigError


@dataclass
class ModelConfig:
    """The Event-JEPA network. ``d`` below is ``d_model``."""

    d_model: int = 128
    num_heads: int = 4
    num_levels: int = 3  # hierarchy levels, level i at temporal resolution 2**i
    depth_per_level: int = 2  # windowed-attention blocks per level
    window: int = 32  # attention window (events or pooled positions) inside a level
    encoder: str = "hierarchical"  # "hierarchical" (linear in n) or "full" (quadratic baseline)
    time_encoding: bool = True
    num_frequencies: int = 16  # learned periodic features, periods from seconds to weeks
    use_types: bool = True  # learned event-type embedding
    max_types: int = 4096  # type vocabulary cap (rarer types map to <unk>)
    predictor_dim: int = 64  # narrow predictor width
    predictor_depth: int = 2
    dropout: float = 0.0
    mlp_ratio: float = 4.0
    gap_mixture: int = 4  # log-normal mixture components of the time-gap head
    readout: str = "context"  # encoder whose states process()/embeddings return: "context" or "target" (EMA)

    def problems(self) -> list[str]:
        p = []
        if self.d_model % self.num_heads:
            p.append(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if self.predictor_dim % self.num_heads:
            p.append(f"model.predictor_dim ({self.predictor_dim}) must be divisible by model.num_heads ({self.num_heads})")
        if self.readout not in ("context", "target"):
            p.append(f"model.readout must be 'context' or 'target', got {self.readout!r}")
        if self.encoder not in ("hierarchical", "full"):
            p.append(f"model.encoder must be 'hierarchical' or 'full', got {self.encoder!r}")
        for name in ("d_model", "num_heads", "num_levels", "depth_per_level", "window", "predictor_dim", "predictor_depth", "gap_mixture", "max_types"):
            if getattr(self, name) < 1:
                p.append(f"model.{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            p.append(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.time_encoding and self.num_frequencies < 1:
            p.append("model.num_frequencies must be at least 1 when model.time_encoding is on")
        return p


@dataclass
class ObjectiveConfig:
    """What the model is trained to do (seed 004: every combination is valid)."""

    jepa: bool = True
    mask_ratio: float = 0.5
    num_mask_blocks: int = 4  # contiguous time blocks masked per sequence
    future: bool = True  # next-event heads + target states 1..k ahead from a causal prefix
    future_steps: int = 2  # k
    lambda_jepa: float = 1.0  # weight of the JEPA loss beside the future/supervised losses
    lambda_sequence: float = 0.5  # sequence-level JEPA: masked-context pooled vector -> target pooled vector
    lambda_future_state: float = 1.0
    lambda_type: float = 1.0
    lambda_gap: float = 0.5
    lambda_embedding: float = 1.0
    lambda_modality: float = 0.1
    ema_start: float = 0.996
    ema_end: float = 1.0
    variance_weight: float = 0.0  # optional V-JEPA style penalty mean(relu(1 - std))

    def problems(self) -> list[str]:
        p = []
        if not (self.jepa or self.future):
            p.append("objective: at least one of objective.jepa and objective.future must be true")
        if not 0.0 < self.mask_ratio < 1.0:
            p.append(f"objective.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.num_mask_blocks < 1:
            p.append("objective.num_mask_blocks must be at least 1")
        if self.future_steps < 1:
            p.append("objective.future_steps must be at least 1")
        if not 0.0 <= self.ema_start <= self.ema_end <= 1.0:
            p.append(f"objective: need 0 <= ema_start <= ema_end <= 1, got {self.ema_start} -> {self.ema_end}")
        for name in ("lambda_jepa", "lambda_sequence", "lambda_future_state", "lambda_type", "lambda_gap", "lambda_embedding", "lambda_modality", "variance_weight"):
            if getattr(self, name) < 0:
                p.append(f"objective.{name} must be non-negative")
        return p


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 32
    max_len: int = 256  # training window length (events)
    stride: int | None = None  # window stride (default: max_len // 2)
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    grad_clip: float = 10.0
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    checkpoint_every: int = 500
    log_every: int = 10
    min_events: int = 4  # sequences shorter than this are skipped (and counted)

    def problems(self) -> list[str]:
        p = []
        for name in ("steps", "batch_size", "max_len", "checkpoint_every", "log_every", "min_events"):
            if getattr(self, name) < 1:
                p.append(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            p.append("train.warmup_steps must be non-negative")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            p.append(f"train: need 0 <= min_lr <= lr and lr > 0, got lr={self.lr} min_lr={self.min_lr}")
        if self.stride is not None and self.stride < 1:
            p.append("train.stride must be at least 1")
        if self.device not in ("auto", "cpu", "cuda"):
            p.append(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        return p


SELECTIONS = ("loss", "accuracy", "mae", "continuation")  # validation criteria of the fine-tuning stage


@dataclass
class FinetuneConfig:
    """The supervised next-event stage of ``ejc train`` (after JEPA pretraining).

    Every choice (epochs, recency half-life, blend weights, n of the n-gram) is made on a
    chronological holdout: the last ``val_fraction`` of the entities by start time.
    """

    enabled: bool = True  # ejc train: run this stage (ejc pretrain never does)
    ends: bool = True  # entities are complete cases: an END event is predicted after the last one
    val_fraction: float = 0.2  # the holdout: last fraction of entities by first event time
    max_epochs: int = 60
    patience: int = 8  # epochs without a better holdout value of any tracked criterion before stopping
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    jepa_weight: float = 0.1  # auxiliary JEPA loss weight (0: off)
    gap_weight: float = 0.5  # gap NLL weight beside the type cross-entropy
    ensemble: int = 3  # members with different seeds whose predictions are averaged
    # recency half-lives tried (fractions of the training time span; null = no weighting)
    half_lives: list[float | None] = field(default_factory=lambda: [None, 0.3, 0.1, 0.03])
    select: str = "accuracy"  # criterion choosing the epoch / half-life of the type predictions
    gap_select: str = "mae"  # the same for the gap predictions
    cont_select: str = "continuation"  # the same for the type given that the case goes on
    refit: bool = True  # refit the chosen members on all given entities for their chosen epochs
    quantile: float = 0.5  # predicted gap = this quantile of the gap distribution
    blend: bool = True  # blend with the drift-aware n-gram, weights chosen on the holdout
    max_n: int = 6  # largest n of the n-gram tried
    drift: bool = True  # absolute-time (drift) input feature
    anomaly_quantile: float = 0.99  # sequence anomaly threshold: this quantile of the holdout's scores

    def problems(self) -> list[str]:
        p = []
        for name in ("max_epochs", "patience", "batch_size", "ensemble", "max_n"):
            if getattr(self, name) < 1:
                p.append(f"finetune.{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            p.append(f"finetune.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.weight_decay < 0 or self.jepa_weight < 0 or self.gap_weight < 0:
            p.append("finetune: need lr > 0 and non-negative weight_decay, jepa_weight, gap_weight")
        if not 0.0 < self.quantile < 1.0:
            p.append(f"finetune.quantile must be in (0, 1), got {self.quantile}")
        if not 0.0 < self.anomaly_quantile <= 1.0:
            p.append(f"finetune.anomaly_quantile must be in (0, 1], got {self.anomaly_quantile}")
        hl = self.half_lives
        if not isinstance(hl, (list, tuple)) or not hl or any(h is not None and (isinstance(h, bool) or not isinstance(h, (int, float)) or not h > 0) for h in hl):
            p.append(f"finetune.half_lives must be a non-empty list of positive numbers or null (no weighting), got {hl!r}")
        for name in ("select", "gap_select", "cont_select"):
            if getattr(self, name) not in SELECTIONS:
                p.append(f"finetune.{name} must be one of {SELECTIONS}, got {getattr(self, name)!r}")
        return p


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    preset: str = "base"

    def problems(self) -> list[str]:
        p: list[str] = []
        for name in ("model", "objective", "train", "finetune"):
            _finite(p, name, getattr(self, name))
        p += self.model.problems() + self.objective.problems() + self.train.problems() + self.finetune.problems()
        if self.model.encoder == "hierarchical" and self.train.max_len < 2 ** (self.model.num_levels - 1):
            p.append(
                f"train.max_len ({self.train.max_len}) must be at least 2**(num_levels-1) = {2 ** (self.model.num_levels - 1)}"
            )
        return p

    def validate(self) -> Config:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        problems: list[str] = []
        _apply_dict(cfg, data, problems)
        if problems:
            raise ConfigError(problems)
        return cfg.validate()

    def flat(self) -> dict[str, Any]:
        """``{"model.d_model": 128, ...}`` for logging as run parameters."""
        out: dict[str, Any] = {}
        for sec, values in self.to_dict().items():
            if isinstance(values, dict):
                out.update({f"{sec}.{k}": v for k, v in values.items()})
            else:
                out[sec] = values
        return out


def _tiny() -> Config:
    return Config(
        model=ModelConfig(d_model=32, num_heads=2, num_levels=2, depth_per_level=1, window=8, num_frequencies=4, predictor_dim=16, predictor_depth=1, gap_mixture=2),
        objective=ObjectiveConfig(ema_start=0.99),
        train=TrainConfig(steps=20, batch_size=4, max_len=32, warmup_steps=2, checkpoint_every=10, log_every=1),
        preset="tiny",
    )


def _small() -> Config:
    return Config(
        model=ModelConfig(d_model=64, num_heads=4, num_levels=3, depth_per_level=1, window=16, num_frequencies=8, predictor_dim=32, predictor_depth=1),
        # short runs: a faster EMA start, or the target encoder barely moves from its initialisation
        objective=ObjectiveConfig(ema_start=0.99),
        train=TrainConfig(steps=300, batch_size=16, max_len=128, warmup_steps=30, checkpoint_every=100),
        preset="small",
    )


def _base() -> Config:
    return Config(preset="base")


def _compact() -> Config:
    """The default of ``ejc train``: a small full-attention model over windows of 64 events.

    Cases, sessions and tickets are short; full attention over 64 events is cheaper than the
    hierarchy there and what the Helpdesk evaluation chose (benchmarks/RESULTS.md).
    """
    return Config(
        model=ModelConfig(d_model=64, num_heads=4, num_levels=2, depth_per_level=1, window=16, num_frequencies=8, predictor_dim=32, predictor_depth=1, encoder="full"),
        objective=ObjectiveConfig(ema_start=0.99),
        train=TrainConfig(steps=200, batch_size=32, max_len=64, warmup_steps=20, checkpoint_every=100, min_events=1),
        preset="compact",
    )


PRESETS: dict[str, Any] = {"tiny": _tiny, "small": _small, "base": _base, "compact": _compact}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name]()


def load_config(source: str | Path = "base", overrides: list[str] | None = None) -> Config:
    """A preset name or a YAML file, then ``key=value`` overrides; validated (all problems at once)."""
    problems: list[str] = []
    src = str(source)
    if src in PRESETS:
        cfg = preset(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise ConfigError(f"{src!r} is neither a preset {sorted(PRESETS)} nor a YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        base = data.pop("preset", "base")
        if base not in PRESETS:
            raise ConfigError(f"{path}: unknown preset {base!r}; presets: {sorted(PRESETS)}")
        cfg = preset(base)
        _apply_dict(cfg, data, problems)
    return apply_overrides(cfg, overrides, problems)


def apply_overrides(cfg: Config, overrides: list[str] | None, problems: list[str] | None = None) -> Config:
    """A validated copy of ``cfg`` with ``key=value`` overrides applied (all problems at once)."""
    cfg = copy.deepcopy(cfg)
    problems = list(problems or [])
    for item in overrides or []:
        if "=" not in item:
            problems.append(f"override {item!r} is not key=value (e.g. model.d_model=64)")
            continue
        key, raw = item.split("=", 1)
        if key.strip() == "preset":
            problems.append("'preset' cannot be overridden; pass the preset as --config NAME (or `preset:` in a YAML file)")
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(cfg, key.strip(), value, problems)
    problems += cfg.problems()
    if problems:
        raise ConfigError(problems)
    return cfg


def _apply_dict(obj: Any, data: dict[str, Any], problems: list[str]) -> None:
    for key, value in data.items():
        _set_path(obj, str(key), value, problems)


def _set_path(root: Any, key: str, value: Any, problems: list[str]) -> None:
    parts = key.split(".")
    obj = root
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        if part not in fields:
            where = ".".join(parts[:i]) or "the config"
            problems.append(f"unknown key {key!r}: {where} has no field {part!r} (fields: {sorted(fields)})")
            return
        if i == len(parts) - 1:
            f = fields[part]
            current = getattr(obj, part)
            if dataclasses.is_dataclass(current):
                if not isinstance(value, dict):
                    problems.append(f"{key} is a section; give a mapping, not {value!r}")
                    return
                for k, v in value.items():
                    _set_path(root, f"{key}.{k}", v, problems)
                return
            ok, coerced = _coerce(value, _field_type(type(obj), f.name))
            if not ok:
                problems.append(f"{key}={value!r}: expected {_type_name(_field_type(type(obj), f.name))}")
                return
            setattr(obj, part, coerced)
        else:
            obj = getattr(obj, part)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _finite(problems: list[str], section: str, obj: Any) -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            problems.append(f"{section}.{f.name} must be a finite number, got {v}")


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return True, None
        for a in args:
            if a is type(None):
                continue
            ok, v = _coerce(value, a)
            if ok:
                return True, v
        return False, value
    if tp is bool:
        return (True, value) if isinstance(value, bool) else (False, value)
    if tp is int:
        if isinstance(value, str):  # e.g. "1_000"
            try:
                return True, int(value.replace("_", ""))
            except ValueError:
                return False, value
        return (True, value) if isinstance(value, int) and not isinstance(value, bool) else (False, value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return (True, value) if isinstance(value, str) else (False, value)
    return True, value


__all__ = ["apply_overrides", "Config", "FinetuneConfig", "ModelConfig", "SELECTIONS", "ObjectiveConfig", "PRESETS", "TrainConfig", "load_config", "preset"]
