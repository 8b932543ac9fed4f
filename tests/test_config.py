"""Configuration: the shipped configs are valid; a wrong key or type is named in the error."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from prdnet.config import ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def default():
    return load_config(ROOT / "config" / "config.yaml")


WORKFLOW_CONFIGS = [p for p in sorted((ROOT / "config").glob("*.yaml")) if "datasets:" in p.read_text()]


@pytest.mark.parametrize("path", WORKFLOW_CONFIGS, ids=lambda p: p.name)
def test_shipped_workflow_configs_are_valid(path):
    load_config(path)


def test_unknown_key_is_named(default):
    broken = copy.deepcopy(default)
    broken["featurizer"]["neighbours"] = 12
    with pytest.raises(ConfigError, match=r"'featurizer'.*'neighbours' was unexpected"):
        validate_config(broken)


def test_unknown_key_in_a_dataset_is_named(default):
    broken = copy.deepcopy(default)
    broken["datasets"]["mp_2018_cgcnn36k"]["splits"] = {}
    with pytest.raises(ConfigError, match=r"datasets\.mp_2018_cgcnn36k'.*'splits' was unexpected"):
        validate_config(broken)


def test_wrong_type_is_named_with_its_path(default):
    broken = copy.deepcopy(default)
    broken["datasets"]["mp_2018_cgcnn36k"]["split"]["seed"] = "forty-two"
    with pytest.raises(ConfigError, match=r"datasets\.mp_2018_cgcnn36k\.split\.seed.*not of type 'integer'"):
        validate_config(broken)


def test_fractions_must_sum_to_one(default):
    broken = copy.deepcopy(default)
    broken["datasets"]["mp_2018_cgcnn36k"]["split"]["fractions"] = [0.8, 0.1, 0.2]
    with pytest.raises(ConfigError, match="sum to 1"):
        validate_config(broken)


def test_matbench_dataset_requires_its_task(default):
    broken = copy.deepcopy(default)
    del broken["datasets"]["matbench_jdft2d"]["matbench_task"]
    with pytest.raises(ConfigError, match="matbench_task"):
        validate_config(broken)
