"""Matformer and iComFormer as their official code builds them: sizes and defining properties.

Official code: YKQ98/Matformer (matformer/models/pyg_att.py, transformer.py) and divelab/AIRS
OpenMat/ComFormer (comformer/models/comformer.py, transformer.py). The official parameter counts
below are written out module by module from those files (file and line in each term), so a
change of our layers that leaves the official architecture shows here.
"""

from __future__ import annotations

import pytest
import torch

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.models import build_model, count_parameters
from prdnet.models.icomformer import IComFormer, lattice_frame
from prdnet.models.matformer import Matformer, MatformerLayer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

OFFICIAL_MATFORMER_TOTAL = 2_880_641
"""``sum(p.numel() for p in Matformer().parameters())`` of the official module (YKQ98/Matformer
9fd3055, default MatformerConfig), counted by instantiating it."""

OFFICIAL_ICOMFORMER_TOTAL = 4_966_497
"""The same for the official ``iComformer()`` (divelab/AIRS 4a16c68, default iComformerConfig)."""


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear(n_in, n_out, bias)``."""
    return n_in * n_out + (n_out if bias else 0)


def official_matformer_parameters(F: int = 128, H: int = 4, bins: int = 128, fc: int = 128) -> tuple[int, int]:
    """(used, unused) parameters of the official Matformer at its defaults (pyg_att.py L17-32)."""
    layer = (  # transformer.py MatformerConv L48-77
        3 * linear(F, H * F)  # lin_key, lin_query, lin_value
        + linear(F, H * F, bias=False)  # lin_edge
        + linear(F, F)  # lin_skip
        + linear(H * F, F)  # lin_concate
        + linear(3 * F, 3 * F)  # lin_msg_update
        + linear(3 * F, F) + 2 * F  # msg_layer: Linear + LayerNorm
        + 2 * F  # bn
        + 2 * 3 * F  # layer_norm
    )
    used = (
        linear(92, F)  # atom_embedding L54-56
        + linear(bins, F) + linear(F, F)  # rbf L57-66
        + 5 * layer  # att_layers L119-124
        + linear(F, fc) + linear(fc, 1)  # fc, fc_out L133-144
    )
    unused = linear(3 * F, F) + linear(F, F) + linear(120, F) + linear(F, F)  # edge_init L105, angle_init_layers L113
    return used, unused


def official_icomformer_parameters(F: int = 256, bins: int = 256, fc: int = 256) -> tuple[int, int, int]:
    """(used, unused, edge layer used) parameters of the official iComFormer at its defaults
    (comformer.py L16-37, one head)."""
    xi = linear(3 * F, F) + linear(F, F)  # key_update / lin_msg_update: Linear, SiLU, Linear
    node_layer = 3 * linear(F, F) + linear(F, F) + linear(F, F) + 2 * xi + 2 * F + 2 * F  # transformer.py L49-64
    edge_layer = (  # transformer.py L125-151
        3 * linear(F, F)  # lin_key, lin_query, lin_value
        + 6 * linear(F, F)  # lin_key_e1..3, lin_value_e1..3
        + linear(F, F, bias=False)  # lin_edge
        + linear(F, F)  # lin_concate
        + 2 * xi  # lin_msg_update, key_update
        + 2 * F + 2 * F  # bn_att, bn
    )
    used = (
        linear(92, F)  # atom_embedding L167-169
        + linear(bins, F) + linear(bins, F)  # rbf, rbf_angle L170-188
        + 4 * node_layer + edge_layer  # att_layers, edge_update_layer L190-197
        + linear(F, fc) + linear(fc, 1)  # fc, fc_out L199-210
    )
    unused = 3 * 32 + linear(F + 32, F)  # lemb L125, lin_edge_len L139: never called in forward
    return used, unused, edge_layer


# --- Sizes ------------------------------------------------------------------------------------


def test_matformer_paper_preset_is_the_official_model_less_its_unused_modules():
    used, unused = official_matformer_parameters()
    assert used + unused == OFFICIAL_MATFORMER_TOTAL  # the shape-by-shape account matches the real module
    ours = count_parameters(build_model({"name": "matformer", "preset": "paper"}, "regression"))
    assert ours == used
    assert abs(ours - OFFICIAL_MATFORMER_TOTAL) == unused


def test_icomformer_paper_preset_is_the_official_model_less_its_unused_modules():
    used, unused, edge_layer = official_icomformer_parameters()
    assert used + unused == OFFICIAL_ICOMFORMER_TOTAL
    model = build_model({"name": "icomformer", "preset": "paper"}, "regression")
    assert count_parameters(model) == used
    assert abs(count_parameters(model) - OFFICIAL_ICOMFORMER_TOTAL) / OFFICIAL_ICOMFORMER_TOTAL < 0.02
    assert count_parameters(model.backbone.edge_layer) == edge_layer  # its own key and value map per lattice vector


# --- Matformer ------------------------------------------------------------------------------


def test_matformer_layer_update_is_silu_of_batchnorm_plus_skip():
    """h ← SiLU(BN(W_c m)) + W_skip h (transformer.py L117-126): with W_c = 0 and BN at its
    initial statistics, the update is exactly W_skip h (softplus(h + ·) would give softplus(h))."""
    torch.manual_seed(0)
    layer = MatformerLayer(channels=8, heads=2).eval()
    torch.nn.init.zeros_(layer.concat.weight)
    torch.nn.init.zeros_(layer.concat.bias)
    h = torch.randn(5, 8)
    edge_index = torch.tensor([[1, 2, 3, 4, 0], [0, 0, 1, 2, 3]])
    out = layer(h, edge_index, torch.randn(5, 8))
    torch.testing.assert_close(out, layer.skip(h))


def test_matformer_edge_features_read_the_bond_length_on_0_to_cutoff():
    """RBF of the raw length d, centres 0 … rbf_cutoff (pyg_att.py L57-62), not of −0.75/d."""
    model = Matformer(channels=8, layers=1, heads=1, rbf_bins=5, rbf_cutoff=8.0, max_atomic_number=100)
    torch.testing.assert_close(model.rbf_centers, torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0]))
    assert model.rbf_width == pytest.approx((2.0 / 2) ** 0.5)  # exp(−(d − μ)²/Δμ) = exp(−(d − μ)²/2σ²)


def rotated(batch, rotation: torch.Tensor):
    """The same crystals with every lattice row turned by ``rotation`` (Cartesian)."""
    turned = batch.clone()
    turned.lattice = batch.lattice @ rotation.T.to(batch.lattice.dtype)
    return turned


@pytest.mark.parametrize("name", ["matformer", "icomformer"])
def test_prediction_is_unchanged_by_a_rotation_of_the_crystal(name):
    torch.manual_seed(0)
    batch = embedded_batch(4, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    rotation = rotation * torch.sign(torch.linalg.det(rotation))  # proper rotation
    model = build_model({"name": name}, "regression").double().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(rotated(batch, rotation)), model(batch), rtol=1e-9, atol=1e-9)


# --- iComFormer -----------------------------------------------------------------------------


def test_lattice_frame_turns_vectors_acute_to_the_first_and_makes_the_frame_right_handed():
    """graphs.py L266-275: b, c negated when obtuse to a; all negated when left-handed."""
    right = torch.tensor([[[1.0, 0, 0], [-0.5, 1, 0], [0.3, 0, -2]]])
    left = torch.tensor([[[1.0, 0, 0], [-0.5, 1, 0], [0.3, 0, 2]]])
    torch.testing.assert_close(lattice_frame(right), torch.tensor([[[1.0, 0, 0], [0.5, -1, 0], [0.3, 0, -2]]]))
    torch.testing.assert_close(lattice_frame(left), torch.tensor([[[-1.0, 0, 0], [-0.5, 1, 0], [-0.3, 0, -2]]]))
    nearly_right = torch.tensor([[[2.0, 0, 0], [-1e-12, 3, 0], [0, 1e-12, 4]]])  # a right angle up to rounding
    torch.testing.assert_close(lattice_frame(nearly_right), nearly_right, rtol=0, atol=0)


def test_icomformer_gives_one_prediction_for_a_cell_and_its_left_handed_negative():
    """(a, b, c) → (−a, −b, −c) with fractional coordinates and offsets negated is the same crystal
    written in a left-handed basis; the official frame rules map both to the same l_1, l_2, l_3."""
    torch.manual_seed(0)
    batch = embedded_batch(4, dtype=torch.float64)
    negated = batch.clone()
    negated.lattice, negated.frac_coords, negated.edge_offset = -batch.lattice, -batch.frac_coords, -batch.edge_offset
    model = build_model({"name": "icomformer"}, "regression").double().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(negated), model(batch), rtol=1e-9, atol=1e-9)


def test_icomformer_edge_layer_tells_the_three_lattice_vectors_apart():
    """Separate key/value maps per lattice vector (transformer.py L131-136): swapping the
    features of l_1 and l_2 changes the edge update, which shared maps would not."""
    torch.manual_seed(0)
    layer = IComFormer(channels=8, layers=1, heads=1, rbf_bins=4, angle_bins=4, max_atomic_number=10).edge_layer.eval()
    e, lengths, angles = torch.randn(6, 8), torch.randn(6, 3, 8), torch.randn(6, 3, 8)
    swap = torch.tensor([1, 0, 2])
    assert not torch.allclose(layer(e, lengths, angles), layer(e, lengths[:, swap], angles[:, swap]))
