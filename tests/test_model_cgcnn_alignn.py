"""CGCNN and ALIGNN as their official code builds them (txie-93/cgcnn, usnistgov/alignn).

The official parameter counts are written out here from the official module lists (file and
line cited), at the official default configuration, so the comparison does not need the
official packages (ALIGNN's needs dgl).
"""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.data.loader import structure_to_data
from prdnet.models import build_model, count_parameters
from prdnet.models.alignn import ALIGNN, line_graph_cosines, line_graph_pairs
from prdnet.models.atom_features import load_atom_feature_table
from prdnet.models.registry import DEFAULT_ATOM_FEATURES

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def linear(width_in: int, width_out: int) -> int:
    """Parameters of nn.Linear(width_in, width_out)."""
    return width_in * width_out + width_out


def batch_norm(width: int) -> int:
    """Trainable parameters of nn.BatchNorm1d(width)."""
    return 2 * width


def official_cgcnn_parameters(
    orig_atom_fea_len: int = 92,
    nbr_fea_len: int = 41,
    atom_fea_len: int = 64,
    n_conv: int = 3,
    h_fea_len: int = 128,
    n_h: int = 1,
) -> int:
    """``CrystalGraphConvNet`` (cgcnn/model.py L104-120) at main.py's defaults (L72-79), regression."""
    fc_full = linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
    conv = fc_full + batch_norm(2 * atom_fea_len) + batch_norm(atom_fea_len)
    return (
        linear(orig_atom_fea_len, atom_fea_len)  # embedding, L106
        + n_conv * conv  # ConvLayer: fc_full, bn1, bn2 (L26-31)
        + linear(atom_fea_len, h_fea_len)  # conv_to_fc, L110
        + (n_h - 1) * linear(h_fea_len, h_fea_len)  # fcs, L113
        + linear(h_fea_len, 1)  # fc_out, L120
    )


def official_alignn_parameters(
    alignn_layers: int = 4,
    gcn_layers: int = 4,
    atom_input_features: int = 92,
    edge_input_features: int = 80,
    triplet_input_features: int = 40,
    embedding_features: int = 64,
    hidden_features: int = 256,
    output_features: int = 1,
) -> int:
    """``ALIGNN`` (alignn/models/alignn.py L187-248) at the ``ALIGNNConfig`` defaults (L19-32)."""

    def mlp_layer(width_in: int, width_out: int) -> int:  # MLPLayer, L170-184
        return linear(width_in, width_out) + batch_norm(width_out)

    eggc = 5 * linear(hidden_features, hidden_features) + 2 * batch_norm(hidden_features)  # L69-76
    return (
        mlp_layer(atom_input_features, hidden_features)  # atom_embedding, L201
        + mlp_layer(edge_input_features, embedding_features) + mlp_layer(embedding_features, hidden_features)  # L205
        + mlp_layer(triplet_input_features, embedding_features) + mlp_layer(embedding_features, hidden_features)
        + alignn_layers * 2 * eggc  # ALIGNNConv: node_update, edge_update (L142-143)
        + gcn_layers * eggc  # L233-240
        + linear(hidden_features, output_features)  # fc, L248
    )


def single_element_batch() -> Batch:
    """Two carbon crystals of different geometry: simple cubic (a = 2 Å) and diamond (a = 3.57 Å)."""
    cubic = Structure(Lattice.cubic(2.0), ["C"], [[0, 0, 0]])
    diamond = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.57), ["C"], [[0, 0, 0]])
    return Batch.from_data_list([structure_to_data(s, dtype=torch.float32) for s in (cubic, diamond)])


# --- Parameter counts at the official default size -----------------------------------------


def test_cgcnn_paper_preset_has_exactly_the_official_parameter_count():
    model = build_model({"name": "cgcnn", "preset": "paper"}, "regression")
    assert count_parameters(model) == official_cgcnn_parameters()


def test_alignn_paper_preset_has_the_official_count_less_the_two_unread_batch_norms():
    model = build_model({"name": "alignn", "preset": "paper"}, "regression")
    unread = 2 * batch_norm(256)  # the last angle update and the last GCN bond update (module docstring)
    assert count_parameters(model) == official_alignn_parameters() - unread
    assert abs(count_parameters(model) / official_alignn_parameters() - 1) < 0.02


# --- CGCNN ----------------------------------------------------------------------------------


def test_cgcnn_atoms_start_from_the_element_table_through_one_linear_map():
    model = build_model({"name": "cgcnn", "preset": "paper"}, "regression")
    table = load_atom_feature_table(DEFAULT_ATOM_FEATURES)
    atomic_numbers = torch.tensor([3, 8, 26, 83])
    torch.testing.assert_close(model.backbone.atom_features(atomic_numbers), table[atomic_numbers])
    assert model.backbone.atom_projection.in_features == 92


def test_cgcnn_readout_is_softplus_of_the_mean_then_conv_to_fc_softplus_fc_out():
    torch.manual_seed(0)
    batch = embedded_batch(4)
    model = build_model({"name": "cgcnn", "preset": "paper"}, "regression").eval()
    with torch.no_grad():
        v = model.backbone(batch)
        mean = torch.stack([v[batch.batch == index].mean(0) for index in range(batch.num_graphs)])
        conv_to_fc, fc_out = model.head[0], model.head[2]
        expected = fc_out(torch.nn.functional.softplus(conv_to_fc(torch.nn.functional.softplus(mean)))).squeeze(-1)
        torch.testing.assert_close(model(batch), expected)


# --- ALIGNN ---------------------------------------------------------------------------------


def test_alignn_line_graph_pairs_every_bond_into_an_atom_with_every_bond_out_of_it():
    # bonds (source → target): 0 → 1, 1 → 0, 2 → 1, 1 → 2, 1 → 1 (a periodic self-image)
    edge_index = torch.tensor([[0, 1, 2, 1, 1], [1, 0, 1, 2, 1]])
    sending, receiving = line_graph_pairs(edge_index, 3)
    expected = {(a, b) for a in range(5) for b in range(5) if edge_index[1, a] == edge_index[0, b]}
    assert set(zip(sending.tolist(), receiving.tolist())) == expected
    assert len(sending) == len(expected)  # backtracking and the self-image paired with itself included


def test_alignn_line_graph_angle_is_the_angle_at_the_shared_atom():
    # bond k → j with r_k − r_j = (1, 0, 0); bonds j → i with r_j − r_i for i at 90°, 180° and on k
    vectors = torch.tensor([[1.0, 0, 0], [0, -2.0, 0], [1.0, 0, 0], [-3.0, 0, 0]], dtype=torch.float64)
    cosines = line_graph_cosines(vectors, torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]))
    torch.testing.assert_close(cosines, torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64))


def test_alignn_updates_the_atom_graph_before_the_line_graph():
    torch.manual_seed(0)
    batch = embedded_batch(3)
    table = load_atom_feature_table(DEFAULT_ATOM_FEATURES)
    sizes = dict(channels=16, embedding_dim=8, max_atomic_number=100, rbf_bins=10, rbf_cutoff=8.0, angle_bins=6)
    one_layer = ALIGNN(alignn_layers=1, gcn_layers=0, atom_table=table, **sizes).eval()
    two_layers = ALIGNN(alignn_layers=2, gcn_layers=0, atom_table=table, **sizes).eval()
    with torch.no_grad():
        before = one_layer(batch), two_layers(batch)
        for model in (one_layer, two_layers):
            for parameter in model.angle_embedding.parameters():
                parameter.add_(torch.randn_like(parameter))
        after = one_layer(batch), two_layers(batch)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)  # angles reach atoms only in layer 2
    assert (after[1] - before[1]).abs().max() > 1e-6  # ~1e-5 here (through normalised gates); float noise ~1e-8


def test_alignn_as_the_official_model_sees_no_geometry_on_single_element_crystals():
    """Issue 11: with one element every atom starts equal, and the normalised gated mean of
    equal neighbour vectors is that vector, so both carbon crystals get one prediction; CGCNN's
    unnormalised sum of distance-dependent messages tells them apart."""
    torch.manual_seed(0)
    batch = single_element_batch()
    alignn = build_model({"name": "alignn", "preset": "small"}, "regression").eval()
    cgcnn = build_model({"name": "cgcnn", "preset": "small"}, "regression").eval()
    with torch.no_grad():
        h = alignn.backbone(batch)
        alignn_out, cgcnn_out = alignn(batch), cgcnn(batch)
    assert (h - h[0]).abs().max() < 1e-5 * h.abs().max()
    assert abs(float(alignn_out[0] - alignn_out[1])) < 1e-5
    assert abs(float(cgcnn_out[0] - cgcnn_out[1])) > 1e-3
