"""ejc.config: presets, YAML files with a `preset:` base, key=value overrides with YAML typing,
one ConfigError listing every problem, dict round trip."""

from __future__ import annotations

import copy

import pytest

from ejc.config import PRESETS, Config, ModelConfig, apply_overrides, load_config, preset
from ejc.errors import ConfigError, EjcError


def problems_of(exc_info: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return exc_info.value.problems


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load_and_validate(name):
    cfg = preset(name)
    assert cfg.preset == name
    assert cfg.problems() == []
    assert cfg.validate() is cfg
    assert load_config(name) == cfg


def test_preset_values_and_unknown_preset():
    tiny, small, base = preset("tiny"), preset("small"), preset("base")
    assert (tiny.model.d_model, tiny.model.num_heads, tiny.model.num_levels, tiny.train.max_len) == (32, 2, 2, 32)
    assert (small.model.d_model, small.train.steps, small.train.batch_size) == (64, 300, 16)
    assert base.model == ModelConfig() and base.train.steps == 2000
    assert preset("tiny") is not preset("tiny")  # fresh objects: callers may mutate
    compact = preset("compact")  # the default of `ejc train`: full attention over 64 events, no case too short
    assert (compact.model.encoder, compact.model.num_levels, compact.train.max_len, compact.train.steps, compact.train.min_events) == ("full", 2, 64, 200, 1)
    assert compact.finetune.half_lives == [None, 0.3, 0.1, 0.03] and compact.finetune.ensemble == 3 and compact.finetune.ends
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'; presets: \['base', 'compact', 'small', 'tiny'\]"):
        preset("huge")


def test_yaml_file_with_preset_base_and_sections(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "# ejc pretrain --config job.yaml\n"
        "preset: small\n"
        "model:\n"
        "  d_model: 96\n"
        "  encoder: full\n"
        "train:\n"
        "  lr: 3.0e-4\n"
        "  stride: 16\n"
        "objective.mask_ratio: 0.25\n"
    )
    cfg = load_config(path)
    assert cfg.preset == "small"
    assert (cfg.model.d_model, cfg.model.encoder) == (96, "full")
    assert cfg.model.num_levels == 3 and cfg.train.steps == 300  # untouched values come from the preset
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.stride == 16
    assert cfg.objective.mask_ratio == 0.25
    # overrides apply after the file
    assert load_config(str(path), ["train.steps=7", "model.d_model=128"]).train.steps == 7
    # no preset key: base
    (tmp_path / "plain.yaml").write_text("train:\n  steps: 5\n")
    plain = load_config(tmp_path / "plain.yaml")
    assert plain.preset == "base" and plain.train.steps == 5 and plain.model.d_model == 128
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == preset("base")


def test_overrides_use_yaml_typing():
    cfg = load_config(
        "tiny",
        [
            "model.d_model=64",
            "model.dropout=0.1",
            "model.mlp_ratio=2",  # int accepted for a float field
            "objective.jepa=false",
            "model.time_encoding=True",
            "train.stride=8",
            "train.device=cpu",
            "train.lr=3e-4",  # YAML 1.1 reads this as text; still a float
            "model.encoder=full",
        ],
    )
    assert cfg.model.d_model == 64 and type(cfg.model.d_model) is int
    assert cfg.model.dropout == 0.1
    assert cfg.model.mlp_ratio == 2.0 and type(cfg.model.mlp_ratio) is float
    assert cfg.objective.jepa is False and cfg.model.time_encoding is True
    assert cfg.train.stride == 8 and cfg.train.device == "cpu"
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.encoder == "full"
    assert load_config("tiny", ["train.stride=8", "train.stride=null"]).train.stride is None
    assert load_config("tiny", ["train.device= cuda "]).train.device == "cuda"  # YAML strips spaces


def test_config_error_lists_every_problem_at_once():
    with pytest.raises(ConfigError) as ei:
        load_config(
            "tiny",
            [
                "model.nope=1",  # unknown key
                "model.d_model=abc",  # wrong type
                "objective.jepa=3",  # wrong type (int for bool)
                "train.steps=0",  # range
                "justtext",  # not key=value
                "model.dropout=1.5",  # range
                "model.num_heads=7",  # 32 % 7 and 16 % 7: two divisibility problems
            ],
        )
    p = problems_of(ei)
    assert len(p) == 8, p
    assert p[0].startswith("unknown key 'model.nope': model has no field 'nope'")
    assert p[1] == "model.d_model='abc': expected int"
    assert p[2] == "objective.jepa=3: expected bool"
    assert p[3] == "override 'justtext' is not key=value (e.g. model.d_model=64)"
    # then the range checks of the values that were set
    assert set(p[4:]) == {
        "model.d_model (32) must be divisible by model.num_heads (7)",
        "model.predictor_dim (16) must be divisible by model.num_heads (7)",
        "model.dropout must be in [0, 1), got 1.5",
        "train.steps must be at least 1, got 0",
    }
    msg = str(ei.value)
    assert msg.startswith("invalid configuration (8 problem(s)):")
    assert msg.count("\n  - ") == 8
    assert isinstance(ei.value, EjcError)


def test_cross_section_and_section_shape_problems(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config("base", ["train.max_len=2", "model=5", "model.dropout.x=1"])
    p = problems_of(ei)
    assert len(p) == 3, p
    assert "model is a section; give a mapping, not 5" in p
    assert any(x.startswith("unknown key 'model.dropout.x'") for x in p)
    assert "train.max_len (2) must be at least 2**(num_levels-1) = 4" in p
    # the same rule does not apply to the quadratic encoder
    assert load_config("base", ["train.max_len=2", "model.encoder=full"]).train.max_len == 2


def test_yaml_file_problems_are_collected_with_overrides(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_model: big\n  colour: red\ntrain:\n  steps: -1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(path, ["objective.mask_ratio=1.0"])
    p = problems_of(ei)
    assert len(p) == 4, p
    assert p[0] == "model.d_model='big': expected int"
    assert p[1].startswith("unknown key 'model.colour'")
    assert "train.steps must be at least 1, got -1" in p
    assert "objective.mask_ratio must be in (0, 1), got 1.0" in p


def test_bad_yaml_and_bad_sources(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as ei:
        load_config(broken)
    assert str(broken) in str(ei.value) and ei.value.__cause__ is not None
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping of sections"):
        load_config(listing)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("preset: giant\n")
    with pytest.raises(ConfigError, match="unknown preset 'giant'"):
        load_config(unknown)
    with pytest.raises(ConfigError, match="is neither a preset"):
        load_config(tmp_path / "missing.yaml")


def test_to_dict_from_dict_round_trip():
    cfg = load_config("small", ["train.stride=24", "objective.future=false", "model.dropout=0.2"])
    d = cfg.to_dict()
    assert d["model"]["d_model"] == 64 and d["train"]["stride"] == 24 and d["preset"] == "small"
    back = Config.from_dict(copy.deepcopy(d))
    assert back == cfg
    assert back.to_dict() == d
    flat = cfg.flat()
    assert flat["model.d_model"] == 64 and flat["objective.future"] is False and flat["preset"] == "small"
    assert len(flat) == sum(len(v) for v in d.values() if isinstance(v, dict)) + 1
    with pytest.raises(ConfigError) as ei:
        Config.from_dict({"model": {"d_model": "x", "bogus": 1}})
    assert len(problems_of(ei)) == 2
    with pytest.raises(ConfigError, match="model.dropout must be in"):
        Config.from_dict({"model": {"dropout": 2.0}})


def test_apply_overrides_returns_a_copy():
    cfg = preset("tiny")
    before = copy.deepcopy(cfg)
    out = apply_overrides(cfg, ["model.d_model=64", "train.steps=3"])
    assert (out.model.d_model, out.train.steps) == (64, 3)
    assert cfg == before and out is not cfg and out.model is not cfg.model
    with pytest.raises(ConfigError):
        apply_overrides(cfg, ["model.d_model=-4"])
    assert cfg == before  # a failed override leaves the original alone too
    assert apply_overrides(cfg, None) == cfg


def test_finetune_section_is_validated_all_at_once():
    cfg = load_config("compact", ["finetune.half_lives=[null, 0.05]", "finetune.select=loss"])
    assert cfg.finetune.half_lives == [None, 0.05] and cfg.finetune.select == "loss"
    with pytest.raises(ConfigError) as e:
        load_config("compact", ["finetune.half_lives=[-1]", "finetune.select=f1", "finetune.val_fraction=1.5", "finetune.ensemble=0"])
    msg = str(e.value)
    for part in ("finetune.half_lives", "finetune.select must be one of", "finetune.val_fraction", "finetune.ensemble must be at least 1"):
        assert part in msg
