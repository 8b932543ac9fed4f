"""PRDNet's attention layers (issue 13: per-atom projections, edge blocks, optional activation
checkpointing) compute what the layers before them computed (benchmarks/reference_prdnet.py),
on embedded crystals, in both variants and under the ablations."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.audit import embedded_data_path, sample_structures
from prdnet.data.loader import structure_to_data
from prdnet.data.recipes import graph_recipe_for
from prdnet.models import build_model, count_parameters
from prdnet.models import prdnet as fast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_prdnet import reference_like  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL_WIDTHS = {
    "paper": {"channels": 24, "layers": 3, "heads": 3, "head_dim": 8},
    "reference": {"channels": 24, "layers": 3, "heads": 3, "head_dim": 8, "rbf_bins": 32, "dropout": 0.0},
}
"""Both variants at small widths, as overrides of their presets (``small`` for the paper variant).
Dropout 0 so that training-mode outputs are deterministic."""

PRESET = {"paper": "small", "reference": "reference"}
ABLATIONS = [None, "NoEdge", "NoRes", "SingleHead"]


def model_pair(variant: str, ablation: str | None = None, dtype: torch.dtype = torch.float32, **backbone):
    """(package model, the same model with the layers before issue 13), same weights."""
    torch.manual_seed(0)
    spec = {
        "name": "prdnet",
        "preset": PRESET[variant],
        "hyperparameters": {"backbone": {**SMALL_WIDTHS[variant], **backbone}},
        "ablation": ablation,
    }
    model = build_model(spec, "regression").to(dtype)
    for module in model.modules():  # non-trivial normalisation statistics for eval mode
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model, reference_like(model)


def relative_difference(new: torch.Tensor, old: torch.Tensor) -> float:
    return float((new - old).abs().max() / old.abs().max())


@lru_cache(maxsize=None)
def batch_of(dtype: torch.dtype, variant: str) -> Batch:
    """8 embedded crystals with the variant's graph recipe (the reference's has lattice self-edges)."""
    recipe = graph_recipe_for({"name": "prdnet", "preset": PRESET[variant]})
    crystals = sample_structures(embedded_data_path(), 8, 16)
    return Batch.from_data_list([structure_to_data(s, params=recipe, dtype=dtype) for _, s, _ in crystals])


@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_backbone_outputs_equal_the_layers_before_to_1e_5_in_float32(variant, ablation, mode):
    model, reference = model_pair(variant, ablation)
    batch = batch_of(torch.float32, variant)
    getattr(model, mode)()
    getattr(reference, mode)()
    with torch.no_grad():
        assert relative_difference(model.backbone(batch), reference.backbone(batch)) < 1e-5


@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("ablation", [None, "NoEdge"])
def test_gradients_of_every_parameter_equal_the_layers_before_in_float64(variant, ablation):
    model, reference = model_pair(variant, ablation, torch.float64)
    batch = batch_of(torch.float64, variant)
    gradients = []
    for candidate in (model, reference):
        candidate.eval()  # in training mode BatchNorm makes the bias before it gradient-free: noise only
        candidate.zero_grad()
        output = candidate.backbone(batch)
        (output * torch.linspace(-1.0, 1.0, output.shape[1], dtype=output.dtype)).sum().backward()
        gradients.append({name: p.grad for name, p in candidate.named_parameters() if p.grad is not None})
    new, old = gradients
    assert new.keys() == old.keys()
    for name in old:
        torch.testing.assert_close(new[name], old[name], rtol=1e-9, atol=1e-12 * float(old[name].abs().max()), msg=name)


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_the_result_does_not_depend_on_the_edge_block_size(variant, monkeypatch):
    model, _ = model_pair(variant)
    batch = batch_of(torch.float32, variant)
    model.eval()
    with torch.no_grad():
        whole = model.backbone(batch)
        monkeypatch.setattr(fast, "CPU_EDGE_CHUNK_ELEMENTS", 7 * 3 * 3 * 8)  # 7 edges a block: a ragged last block
        assert fast.edge_chunk_rows(torch.device("cpu"), 3 * 3 * 8) == 7
        assert relative_difference(model.backbone(batch), whole) < 1e-6


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_state_dicts_and_parameter_counts_are_those_of_the_layers_before(variant):
    model, reference = model_pair(variant)
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert count_parameters(model) == count_parameters(reference)
    reference.load_state_dict(model.state_dict())  # strict: the same names and shapes
    model.load_state_dict(reference.state_dict())


def saved_storages(run) -> list[int]:
    """Element counts of the distinct tensors autograd keeps for the backward pass of ``run()``."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes() // tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sorted(storages.values())


@pytest.mark.parametrize("layer_class", [fast.CrystalAttentionLayer, fast.ReferenceAttentionLayer])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_layer_keeps_per_edge_only_the_edge_slot_and_its_message_term(layer_class, checkpoint):
    torch.manual_seed(0)
    batch = embedded_batch(4)
    heads, width, edges = 3, 8, batch.edge_index.shape[1]
    layer = layer_class(16, heads, width, 5, checkpoint=checkpoint)
    h = torch.randn(batch.num_nodes, 16, requires_grad=True)
    edge_attr = torch.randn(edges, 5)
    kept = saved_storages(lambda: layer(h, batch.edge_index, edge_attr))
    per_edge = [size for size in kept if size >= edges * heads * width]
    # W_e e_ij [E, H, D] and W_c W_e e_ij [E, H, 3D]; before issue 13, seven tensors of [E, H, 3D] and
    # more; under checkpointing nothing per edge but the layer's inputs (e_ij [E, 5] here)
    assert per_edge == ([] if checkpoint else [edges * heads * width, edges * heads * 3 * width])


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_checkpointing_changes_no_result_and_updates_batch_statistics_once(variant):
    plain, _ = model_pair(variant)
    checkpointed, _ = model_pair(variant, checkpoint_layers=True)
    checkpointed.load_state_dict(plain.state_dict())
    batch = batch_of(torch.float32, variant)
    outputs = []
    for model in (plain, checkpointed):
        model.train()
        outputs.append(model.backbone(batch))
        outputs[-1].square().mean().backward()
    assert relative_difference(outputs[1], outputs[0]) < 1e-6
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        if p.grad is not None and "concat.bias" not in name:  # gradient-free before BatchNorm in training mode
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6 * float(p.grad.abs().max()), msg=name)
    for a, b in zip(plain.buffers(), checkpointed.buffers()):  # BatchNorm statistics updated once, not twice
        torch.testing.assert_close(a, b, equal_nan=True)  # (the element table has NaN rows)


@pytest.mark.parametrize("layer_class", [fast.CrystalAttentionLayer, fast.ReferenceAttentionLayer])
def test_under_bf16_autocast_a_layer_gives_nearly_its_float32_result_and_gradients(layer_class):
    torch.manual_seed(0)
    batch = embedded_batch(4)
    layer = layer_class(16, 3, 8, 5).eval()
    h = torch.randn(batch.num_nodes, 16)
    edge_attr = torch.randn(batch.edge_index.shape[1], 5)
    exact = layer(h, batch.edge_index, edge_attr)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # training.precision: bf16
        mixed = layer(h, batch.edge_index, edge_attr)
    assert relative_difference(mixed.float(), exact) < 0.05
    mixed.float().square().mean().backward()  # the backward pass recomputes under the same autocast
    for name, parameter in layer.named_parameters():
        assert parameter.grad.dtype == torch.float32 and torch.isfinite(parameter.grad).all(), name
