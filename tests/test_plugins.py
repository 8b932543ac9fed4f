"""Sources and models from other packages, found through entry points (prdnet.sources,
prdnet.models): a package installed beside ours adds one without editing this project, and the
config schema's lists come from the registries."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from prdnet.config import ConfigError, load_schema, validate_config
from prdnet.data.sources import available_sources, load_source
from prdnet.models.registry import available_models, build_model

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
import torch
from torch import nn
from pymatgen.core import Lattice, Structure
from prdnet.data.sources import Entry, SourceData, Task


def rock_salts(options):
    """Rock salt cells with a lattice constant as the target."""
    sizes = options.get("sizes", [5.0, 5.5])
    entries = [Entry(f"nacl-{a}", Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), {"a": a})
               for a in sizes]
    return SourceData(tasks={"a": Task("a", "regression", "Å")}, entries=entries, version="plugin 0.1")


class TinyBackbone(nn.Module):
    """One embedding per element."""

    presets = {"small": {"backbone": {"channels": 4}, "head": {"hidden": 4, "layers": 1, "activation": "silu"},
                         "diffraction_preset": "small"}}

    def __init__(self, channels):
        super().__init__()
        self.out_channels = channels
        self.embedding = nn.Embedding(101, channels)

    def forward(self, batch):
        return self.embedding(batch.atomic_numbers)
'''


def install(folder: Path, module: str, code: str, entry_points: str) -> None:
    """A package (one module) in ``folder`` with its dist-info entry points, as pip leaves it."""
    (folder / f"{module}.py").write_text(code)
    dist_info = folder / f"{module}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """``prdnet_demo_plugin`` on sys.path: a source ``rock_salts`` and a model ``tiny_backbone``."""
    install(tmp_path, "prdnet_demo_plugin", textwrap.dedent(PLUGIN),
            "[prdnet.sources]\nrock_salts = prdnet_demo_plugin:rock_salts\n\n"
            "[prdnet.models]\ntiny_backbone = prdnet_demo_plugin:TinyBackbone\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_schema_lists_exactly_the_registered_sources():
    enum = load_schema()["$defs"]["dataset"]["properties"]["source"]["enum"]
    assert enum == available_sources()
    assert {"mp_2018_cgcnn36k", "matbench", "table", "structure_folder", "ase", "matbench_json"} <= set(enum)


def test_a_source_from_an_installed_package(installed_plugin):
    assert "rock_salts" in available_sources()
    source = load_source("rock_salts", {"sizes": [5.0, 6.0]})
    assert [e.id for e in source.entries] == ["nacl-5.0", "nacl-6.0"]


def test_the_config_accepts_a_plugin_source_and_model_and_nothing_else(installed_plugin):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["datasets"] = {"salts": {"source": "rock_salts", "tasks": ["a"], "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0}}}
    config["models"] = {"tiny": {"name": "tiny_backbone"}}
    config["experiments"] = [{"datasets": ["salts"], "models": ["tiny"], "diffraction": ["none"], "ablations": ["default"]}]
    validate_config(copy.deepcopy(config))
    config["datasets"]["salts"]["source"] = "rock_salt"
    with pytest.raises(ConfigError, match=r"datasets.salts.source': 'rock_salt' is not one of .*'rock_salts'"):
        validate_config(config)


def test_a_model_from_an_installed_package(installed_plugin, rock_salt):
    from prdnet.data.loader import structure_to_data
    from torch_geometric.data import Batch

    assert "tiny_backbone" in available_models()
    model = build_model({"name": "tiny_backbone", "preset": "small"}, "regression")
    batch = Batch.from_data_list([structure_to_data(rock_salt, dtype=torch.float32)])
    assert model(batch).shape == (1,)


def test_a_broken_plugin_is_named_in_the_error(tmp_path, monkeypatch):
    from prdnet.plugins import PluginError

    install(tmp_path, "prdnet_broken_plugin", "raise ImportError('missing dependency')\n",
            "[prdnet.sources]\nbroken = prdnet_broken_plugin:factory\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"entry point 'broken' .* of package prdnet-broken-plugin .* missing dependency"):
        load_source("broken", {})
