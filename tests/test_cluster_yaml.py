"""cluster.yaml passes Ray's own launcher validation (defaults filled in, then the JSON schema)."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _validate(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_is_valid_for_the_ray_launcher(config):
    prepared = _validate(config)
    head = prepared["available_node_types"][prepared["head_node_type"]]
    workers = {k: v for k, v in prepared["available_node_types"].items() if k != prepared["head_node_type"]}
    assert head["resources"] == {"CPU": 0}  # the head does no training work
    assert workers and all(v["min_workers"] == 0 and v["max_workers"] >= 1 for v in workers.values())  # autoscaling
    assert prepared["docker"]["image"] == "rayproject/ray:2.60.0-py311-gpu"
    assert any(".[gpu" in c for c in prepared["setup_commands"])
    assert "--env RAY_AUTH_MODE=token" in prepared["docker"]["run_options"]
    assert "~/.ray/auth_token" in prepared["file_mounts"]


def test_the_schema_check_is_real(config):
    bad = copy.deepcopy(config)
    bad["available_node_types"]["worker.gpu"]["min_workers"] = "zero"
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad)
    bad = copy.deepcopy(config)
    bad["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        _validate(bad)
