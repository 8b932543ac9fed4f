"""SchNet and MEGNet as kgcnn v2.1.0 builds them for its MatBench leaderboard runs.

The official parameter counts are computed from kgcnn's layer shapes at the configuration of
materialsproject/matbench benchmarks/matbench_v0.1_{SchNet,MegNet}_kgcnn_v2.1.0/run.py (hyper_1),
layer by layer, as Keras counts them: Dense(n → m) n·m + m, Embedding(n, m) n·m, LSTM(n → m)
4m(n + m + 1) (one bias vector).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from model_data import embedded_batch, torch_single_thread  # noqa: F401
from prdnet.data.graphs import periodic_graph
from prdnet.data.loader import structure_to_data
from prdnet.data.recipes import graph_recipe_for
from prdnet.models import build_model, count_parameters
from prdnet.models.base import encode
from prdnet.models.basis import gaussian_basis
from prdnet.models.megnet import KgcnnSet2Set
from prdnet.models.schnet import kgcnn_gaussian_centers

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def dense(n_in: int, n_out: int) -> int:
    """Parameters of a Keras Dense layer with bias."""
    return n_in * n_out + n_out


def dense_stack(widths: list[int]) -> int:
    """Parameters of consecutive Dense layers widths[0] → widths[1] → …"""
    return sum(dense(a, b) for a, b in zip(widths[:-1], widths[1:]))


def kgcnn_schnet_parameters() -> int:
    """kgcnn v2.1.0 ``Schnet.make_crystal_model`` at run.py hyper_1 (L54-L66)."""
    embedding, units, depth, bins, last_mlp = (95, 64), 128, 4, 25, [128, 64, 1]
    interaction = (
        dense(bins, units) + dense(units, units)  # SchNetCFconv filter network (schnet_conv.py L50-L51)
        + units * units  # lay_dense1, no bias (L137)
        + dense(units, units) + dense(units, units)  # lay_dense2, lay_dense3 (L138-L139)
    )
    return (
        embedding[0] * embedding[1]
        + dense(embedding[1], units)  # DenseEmbedding(units) after the embedding (Schnet.py L253)
        + depth * interaction
        + dense_stack([units, *last_mlp])
    )


def kgcnn_megnet_parameters() -> int:
    """kgcnn v2.1.0 ``Megnet.make_crystal_model`` at run.py hyper_1 (L53-L67)."""
    embedding, state_in, bins, ff, phi, blocks = (95, 64), 1, 25, [64, 32], [64, 32, 32], 3
    channels, output_mlp = 16, [32, 16, 1]
    width = ff[-1]
    first_ff = dense_stack([embedding[1], *ff]) + dense_stack([bins, *ff]) + dense_stack([state_in, *ff])
    later_ff = 3 * dense_stack([width, *ff])
    block = dense_stack([4 * width, *phi]) + 2 * dense_stack([3 * width, *phi])
    lstm = 4 * channels * (2 * channels + channels + 1)
    set2set = 2 * (dense(width, channels) + lstm)
    return (
        embedding[0] * embedding[1]
        + first_ff
        + (blocks - 1) * later_ff
        + blocks * block
        + set2set
        + dense_stack([4 * channels + width, *output_mlp])
    )


EXTRA_EMBEDDING_ROWS = (100 + 1) - 95
"""Our embeddings hold Z = 0 … 100 (max_atomic_number 100); kgcnn's Embedding(95, ·) Z = 0 … 94."""


def test_schnet_paper_has_kgcnn_parameter_count_but_for_the_embedding_rows():
    model = build_model({"name": "schnet", "preset": "paper"}, "regression")
    official = kgcnn_schnet_parameters()
    assert official == 316_225
    assert count_parameters(model) == official + EXTRA_EMBEDDING_ROWS * 64
    assert abs(count_parameters(model) / official - 1) < 0.02


def test_megnet_paper_has_kgcnn_parameter_count_but_for_embedding_rows_and_lstm_biases():
    model = build_model({"name": "megnet", "preset": "paper"}, "regression")
    official = kgcnn_megnet_parameters()
    assert official == 144_641
    second_lstm_bias = 2 * 4 * 16  # PyTorch's LSTMCell has bias_ih and bias_hh, Keras one bias
    assert count_parameters(model) == official + EXTRA_EMBEDDING_ROWS * 64 + second_lstm_bias
    assert abs(count_parameters(model) / official - 1) < 0.02


def test_gaussian_centres_are_kgcnn_spacing_and_width_gives_known_neighbour_values():
    centres = kgcnn_gaussian_centers(25, 5.0)
    torch.testing.assert_close(centres, torch.arange(25, dtype=torch.float64) * 0.2)
    model = build_model({"name": "schnet", "preset": "paper"}, "regression").backbone
    expansion = gaussian_basis(torch.tensor([1.0], dtype=torch.float64), model.rbf_centers.double(), model.rbf_width)
    # d = μ_5 = 1 Å: e_5 = 1, its neighbours 0.2 Å away exp(−0.2²/(2·0.4²)) = exp(−1/8)
    expected = torch.tensor([math.exp(-0.125), 1.0, math.exp(-0.125)], dtype=torch.float64)
    torch.testing.assert_close(expansion[0, 4:7], expected)


def test_schnet_prediction_is_the_mean_of_per_atom_outputs_as_kgcnn_readout():
    model = build_model({"name": "schnet", "preset": "paper"}, "regression").eval()
    batch = embedded_batch(4)
    with torch.no_grad():
        per_atom = model.head(model.backbone(batch)).squeeze(-1)
        means = torch.stack([per_atom[batch.batch == b].mean() for b in range(4)])
        torch.testing.assert_close(model(batch), means)


def test_set2set_restarts_its_lstm_from_zero_at_every_step_and_reads_a_lone_item_exactly():
    torch.manual_seed(0)
    set2set = KgcnnSet2Set(channels=4, steps=3)
    item = torch.randn(1, 4)
    with torch.no_grad():
        out = set2set(item, torch.zeros(1, dtype=torch.long), 1)
        q_star = torch.zeros(1, 8)
        for _ in range(3):
            q, _ = set2set.lstm(q_star, (torch.zeros(1, 4), torch.zeros(1, 4)))
            q_star = torch.cat([q, item], dim=-1)  # softmax over one item is 1: r = m
    torch.testing.assert_close(out, q_star)


@pytest.mark.parametrize("name", ["schnet", "megnet"])
def test_graph_recipe_is_kgcnn_every_image_within_5_angstrom_self_images_included(name):
    recipe = graph_recipe_for({"name": name, "preset": "paper"})
    rule = (recipe.neighbours, recipe.cutoff, recipe.max_neighbours, recipe.lattice_self_edges)
    assert rule == ("radius", 5.0, None, 0)
    a = 2.87  # bcc Fe, conventional cell: 8 × a√3/2, 6 × a, 12 × a√2, 24 × a√11/2, 8 × a√3 (4.97 Å)
    graph = periodic_graph(np.eye(3) * a, np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]), recipe)
    assert np.bincount(graph.target).tolist() == [58, 58]
    self_images = graph.source == graph.target  # the lattice translations a, a√2, a√3 of the cubic cell
    assert np.bincount(graph.target[self_images]).tolist() == [26, 26]
    assert graph.distance.max() < 5.0 and not (self_images & ~graph.offset.any(axis=1)).any()


@pytest.mark.parametrize("name", ["schnet", "megnet"])
def test_supercell_on_its_own_radius_graph_gives_the_same_prediction(name):
    torch.manual_seed(0)
    model = build_model({"name": name, "preset": "paper"}, "regression").double().eval()
    cell = Structure(Lattice.tetragonal(3.9, 4.1), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.52], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    supercell = cell.make_supercell([2, 1, 1], in_place=False)
    recipe = graph_recipe_for({"name": name, "preset": "paper"})
    batch = Batch.from_data_list([structure_to_data(crystal, params=recipe) for crystal in (cell, supercell)])
    assert batch.edge_index.shape[1] > 12 * batch.num_nodes  # the radius graph, denser than 12-NN
    with torch.no_grad():
        prediction = model(batch)
    torch.testing.assert_close(prediction[0], prediction[1], rtol=1e-10, atol=1e-10)


def test_megnet_crystal_vector_is_the_first_output_layer_after_set2set_and_state():
    model = build_model({"name": "megnet", "preset": "paper", "diffraction": "paper"}, "regression")
    batch = embedded_batch(3)
    h, g = encode(model.backbone, batch)
    assert h.shape == (batch.num_nodes, 32) and g.shape == (3, 32)
    assert model.backbone.readout[0].in_features == 2 * 16 + 2 * 16 + 32  # Set2Set(v) ⊕ Set2Set(e) ⊕ u
    assert [layer.out_features for layer in model.head if isinstance(layer, torch.nn.Linear)] == [16, 1]
    assert model.fusion[0].in_features == 32 + model.diffraction.out_channels
