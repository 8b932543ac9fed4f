"""PRDNet's two variants: `reference` (the released code's backbone) and `paper` (the paper's text)."""

from __future__ import annotations

import math

import pytest
import torch

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.models import build_model, count_parameters
from prdnet.models.prdnet import PRDNet, ReferenceAttentionLayer, reference_distance_basis

pytestmark = pytest.mark.usefixtures("torch_single_thread")

OFFICIAL_LAYER_STACK = 20_901_888
"""Parameters of the 6 ``PrdnetConv`` layers of Bin-Cao/PRDNet@a422056 at its default size
(``Prdnet(PrdnetConfig(name="prdnet"))``, ``att_layers``): 3,483,648 each, the paper's "20.9M".
Counted on the official module, instantiated from that commit."""

OFFICIAL_FORWARD_PARAMETERS = 21_325_569
"""Parameters of that official model that take part in a forward pass: atom MLP 90,112, edge MLP
198,400, attention layers, their LayerNorms 3,072, head Linear(256, 512) + Linear(512, 1) 132,097
(its 23,184,813 also count modules it never calls: edge_init, angle_init_layers, fc_norms and
the diffraction branch)."""

SMALL_REFERENCE = {"channels": 32, "layers": 2, "heads": 2, "head_dim": 16, "rbf_bins": 32}
"""The reference architecture at small widths, as overrides of the `reference` preset."""


def reference_spec(diffraction: str | None = None, ablation: str | None = None, **backbone) -> dict:
    return {
        "name": "prdnet",
        "preset": "reference",
        "hyperparameters": {"backbone": {**SMALL_REFERENCE, **backbone}},
        "diffraction": diffraction,
        "ablation": ablation,
    }


def test_reference_preset_has_the_official_layer_stack_and_whole_model_size():
    model = build_model({"name": "prdnet", "preset": "reference"}, "regression")
    assert count_parameters(model.backbone.layers) == OFFICIAL_LAYER_STACK
    assert abs(count_parameters(model) / OFFICIAL_FORWARD_PARAMETERS - 1) < 0.02


def test_reference_attention_layer_follows_its_formula_edge_by_edge():
    torch.manual_seed(0)
    channels, heads, width, edge_dim = 4, 2, 3, 5
    layer = ReferenceAttentionLayer(channels, heads, width, edge_dim)
    for parameter in layer.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    layer.norm.running_mean.normal_()
    layer.norm.running_var.uniform_(0.5, 2.0)
    layer.eval()
    h = torch.randn(3, channels)
    edge_index = torch.tensor([[1, 2, 0, 2, 2], [0, 0, 1, 1, 2]])  # j → i; the last is a self-edge
    edge_attr = torch.randn(5, edge_dim)

    def linear(module, x):
        return x @ module.weight.T + (module.bias if module.bias is not None else 0)

    def layer_norm(module, x):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], module.weight, module.bias, module.eps)

    aggregated = torch.zeros(3, heads, width)
    for edge, (j, i) in enumerate(edge_index.T.tolist()):
        for head in range(heads):
            part = slice(head * width, (head + 1) * width)
            q = linear(layer.query, h[i])[part]
            k_i, k_j = linear(layer.key, h[i])[part], linear(layer.key, h[j])[part]
            v_i, v_j = linear(layer.value, h[i])[part], linear(layer.value, h[j])[part]
            e = linear(layer.edge, edge_attr[edge])[part]
            alpha = torch.cat([q, q, q]) * torch.cat([k_i, k_j, e]) / math.sqrt(3 * width)
            gated = linear(layer.message, torch.cat([v_i, v_j, e])) * torch.sigmoid(layer_norm(layer.score_norm, alpha))
            aggregated[i, head] += layer_norm(layer.message_out[1], linear(layer.message_out[0], gated))
    concat = linear(layer.concat, aggregated.flatten(1))
    bn = layer.norm
    normed = (concat - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    expected = torch.nn.functional.silu(normed) + linear(layer.skip, h)
    torch.testing.assert_close(layer(h, edge_index, edge_attr), expected)


def test_reference_block_adds_the_normalised_update_and_no_res_drops_the_residual():
    torch.manual_seed(0)
    batch = embedded_batch(4)
    with_residual = build_model(reference_spec(layers=1), "regression").backbone.eval()
    without = build_model(reference_spec(layers=1, residual=False), "regression").backbone.eval()
    without.load_state_dict(with_residual.state_dict())
    with torch.no_grad():
        h0 = with_residual.input_projection(with_residual.atom_features(batch.atomic_numbers))
        edge_attr = with_residual.edge_attributes(batch, h0.dtype)
        update = with_residual.layer_norms[0](with_residual.layers[0](h0, batch.edge_index, edge_attr))
        torch.testing.assert_close(with_residual(batch), h0 + update)
        torch.testing.assert_close(without(batch), update)


def test_reference_distance_basis_is_the_official_rbf_with_gamma_one_over_spacing():
    centers = torch.linspace(0.0, 8.0, 5)  # spacing Δμ = 2 Å: exp(−(d − μ)²/2)
    basis = reference_distance_basis(torch.tensor([1.0]), centers)
    expected = torch.exp(-torch.tensor([[1.0, 1.0, 9.0, 25.0, 49.0]]) / 2.0)
    torch.testing.assert_close(basis, expected)


def test_reference_starts_from_cgcnn_element_features_and_paper_from_an_embedding():
    reference = build_model(reference_spec(), "regression").backbone
    assert reference.atom_features.out_channels == 92
    assert reference.input_projection[0].in_features == 92
    paper = build_model({"name": "prdnet", "preset": "small"}, "regression").backbone
    assert paper.atom_features.embedding is not None


@pytest.mark.parametrize("diffraction", [None, "paper", "invariant"])
def test_reference_takes_the_diffraction_plugin_with_gradients_for_every_parameter(diffraction):
    torch.manual_seed(0)
    batch = embedded_batch(6)
    model = build_model(reference_spec(diffraction), "regression")
    out = model(batch)
    assert out.shape == (6,) and torch.isfinite(out).all()
    (out - batch.y).abs().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_reference_ablations_remove_what_they_name():
    batch = embedded_batch(3)
    single = build_model(reference_spec(ablation="SingleHead"), "regression")
    assert all(layer.heads == 1 for layer in single.backbone.layers)
    no_edge = build_model(reference_spec(ablation="NoEdge"), "regression")
    assert no_edge.backbone.edge_encoder is None
    assert all(layer.edge is None and layer.slots == 2 for layer in no_edge.backbone.layers)
    no_res = build_model(reference_spec(ablation="NoRes"), "regression")
    assert no_res.backbone.residual is False
    for model in (single, no_edge, no_res):
        assert model(batch).shape == (3,)


@pytest.mark.parametrize(
    ("variant", "extra", "message"),
    [
        ("reference", {"dropout": 0.1, "sbf_bins": 8}, "takes no hyperparameter"),
        ("paper", {"rbf_width": 0.2, "sbf_bins": 8, "sbf_width": 0.3, "dropout": 0.1}, "takes no hyperparameter"),
        ("paper", {"rbf_width": 0.2}, "needs hyperparameter"),
        ("reference", {}, "needs hyperparameter"),
        ("matformer", {"dropout": 0.1}, "variant must be one of"),
    ],
)
def test_a_key_of_the_other_variant_or_a_missing_one_is_refused(variant, extra, message):
    with pytest.raises(ValueError, match=message):
        PRDNet(channels=8, layers=1, heads=1, head_dim=8, rbf_bins=4, rbf_cutoff=8.0, variant=variant, **extra)


def test_reference_overfits_32_embedded_crystals_formation_energy():
    torch.manual_seed(0)
    batch = embedded_batch(32, max_atoms=16)
    target_spread = float(batch.y.std())
    model = build_model(reference_spec(), "regression")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    mae = math.inf
    for step in range(1, 301):
        model.train()
        optimizer.zero_grad()
        (model(batch) - batch.y).abs().mean().backward()
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                mae = float((model(batch) - batch.y).abs().mean())
            if mae < 0.1 * target_spread:
                break
    assert mae < 0.1 * target_spread, f"training MAE {mae:.3f} after {step} steps, target std {target_spread:.3f}"
