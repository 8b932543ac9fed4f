"""Record the crystal graphs the released PRDNet trainer builds, for tests/test_released_graph.py.

What runs: the released code itself, Bin-Cao/PRDNet at commit a422056 (the one this project
cites), ``prdnet/graphs.py`` ``PygGraph.atom_dgl_multigraph`` (L420-476: k-NN edges
``nearest_neighbor_edges_submit`` L242-304, made undirected by ``build_undirected_edgedata``
L351-384), called exactly as the trainer calls it (``trainer.py`` L600-610 with the trainer's
config L890 ``neighbor_strategy: k-nearest``, L919-921 ``cutoff 8.0, max_neighbors 12,
use_lattice True``, and ``use_canonize=False`` L607), on ``jarvis.core.atoms.Atoms`` made the way
the trainer's cached path makes them (``trainer.py`` L527-537 and L597: an ASE database row →
``cell.array``, ``get_scaled_positions()``, ``JarvisAtoms.from_dict``).

Input: the first ``--count`` rows (40) of MatBench v0.1 ``matbench_phonons`` in MatBench's
order (``mb-phonons-0001`` ...), read through the ``matbench`` package from the embedded data
(``MATMINER_DATA``). Each pymatgen structure is written to an ASE database
(``AseAtomsAdaptor.get_atoms``, ``ase.db``), which the released code reads back as above.

Two interpreters: this script runs under the project's venv (matbench, pymatgen) and runs itself
again, with ``--released-run``, under a scratch venv outside the repository that holds only what
the released ``prdnet/graphs.py`` imports. The venv the fixture was made with::

    python3.11 -m venv /tmp/released
    /tmp/released/bin/pip install jarvis-tools==2025.8.30 ase==3.29.0 pandas tqdm torch torch_geometric
    # torch 2.13.0+cpu, torch_geometric 2.8.1, numpy 2.4.6 (jarvis-tools 2025.8.30: the last release
    # before the released graphs.py was last changed, 2025-09-11; its Atoms.get_all_neighbors is
    # the same as 2026.6.12's)

and the released code came from the ``fetch`` mirror of github:Bin-Cao/PRDNet (a bare git dir;
``git show a422056:prdnet/graphs.py``). Command::

    MATMINER_DATA=/work/shared/data/matminer .venv/bin/python benchmarks/released_graph_fixture.py \\
        --released-python /tmp/released/bin/python --released-git /work/.mirror/Bin-Cao+PRDNet/repo

Output, ``tests/fixtures/released_graph_phonons40.json``: per crystal its MatBench id, atom count,
whether the released code widened its radius (some atom has fewer than 12 neighbours within 8 Å),
its edge count and the digest of its edge multiset (:func:`edge_multiset`, :func:`multiset_digest`);
and ``pinned``: a few crystals (:data:`PINNED`, two of them constructed, :func:`constructed_crystals`,
as no MatBench phonons or jdft2d crystal is widened) with their structure and whole multiset. An
edge is written (i, j, n0, n1, n2): centre i, neighbour j, periodic image n of j, the displacement
being r_j + n − r_i with r the STORED fractional coordinates (MatBench's); in the released graph
that is ``edge_index`` (i, j) with ``edge_attr`` (r_j + n − r_i) L, from which n is recovered (ASE
wraps coordinates into [0, 1), so the released code's own images can differ by the wrap). In
:class:`prdnet.data.graphs.PeriodicGraph` terms i is ``target``, j ``source``, n ``offset``. The
script also builds the project's ``prdnet_reference`` recipe on the same crystals and prints
crystal by crystal whether they agree (when the fixture was made: 42 of 42 equal, 8,348 edges on
the 40 phonons crystals; with ``--count 1265 --output <elsewhere>`` all 1,265 phonons crystals were
equal too, and with ``--task matbench_jdft2d --count 636`` all 636 jdft2d ones).

What decides the released graph beyond the rules of its prdnet/graphs.py: jarvis-tools' ``Lattice``
rounds the lattice to 5 decimals for the atoms' Cartesian positions while ``get_all_neighbors``
translates images by the unrounded one, and the exact-equality tie rule then turns on the last bit
of that arithmetic and of ASE's coordinate round trip (recipe field ``selection_distances``).
Without them (the cell's own distances, exact ties) the same rules give 8,372 edges on these 40
crystals, 20 of them different from the released graphs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

COMMIT = "a422056"
TASK = "matbench_phonons"
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "released_graph_phonons40.json"


def edge_multiset(centre, neighbour, image) -> list[list[int]]:
    """Sorted [i, j, n0, n1, n2, multiplicity] rows of a graph's edges."""
    counts = Counter(
        (int(i), int(j), *map(int, n)) for i, j, n in zip(centre, neighbour, np.asarray(image).reshape(-1, 3))
    )
    return [[*key, count] for key, count in sorted(counts.items())]


def multiset_digest(rows: list[list[int]]) -> str:
    """sha256 of the JSON of :func:`edge_multiset`'s rows (compact separators)."""
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Run under the scratch venv: the released code and nothing of this project.


def released_run(database: str, source: str, output: str) -> None:
    """Released trainer.py L527-537, L597-610 on every row of ``database``; writes edge_index,
    edge_attr and the widened flag of each graph to ``output`` (JSON)."""
    sys.path.insert(0, source)
    from ase.db import connect
    from jarvis.core.atoms import Atoms as JarvisAtoms
    from prdnet.graphs import PygGraph  # the released prdnet/graphs.py

    config = {"neighbor_strategy": "k-nearest", "cutoff": 8.0, "max_neighbors": 12, "use_lattice": True,
              "use_angle": False}  # trainer.py L890, L919-922
    records = []
    for row in connect(database).select():
        atoms = row.toatoms()
        atoms_dict = {  # trainer.py L531-537
            "lattice_mat": atoms.cell.array.tolist(),
            "coords": atoms.get_scaled_positions().tolist(),
            "elements": atoms.get_chemical_symbols(),
            "cartesian": False,
            "props": {},
        }
        atoms_obj = JarvisAtoms.from_dict(atoms_dict)  # trainer.py L597
        result = PygGraph.atom_dgl_multigraph(  # trainer.py L600-610
            atoms=atoms_obj,
            neighbor_strategy=config["neighbor_strategy"],
            cutoff=config["cutoff"],
            max_neighbors=config["max_neighbors"],
            atom_features="atomic_number",
            compute_line_graph=True,
            use_canonize=False,
            use_lattice=config["use_lattice"],
            use_angle=config["use_angle"],
        )
        graph = result[0] if isinstance(result, tuple) else result
        # graphs.py L254-258: the crystal is widened (and loses its self-edges) when some atom has
        # fewer than max_neighbors within cutoff
        widened = min(len(n) for n in atoms_obj.get_all_neighbors(r=config["cutoff"])) < config["max_neighbors"]
        records.append({
            "material_id": row.material_id,
            "edge_index": graph.edge_index.tolist(),
            "edge_attr": graph.edge_attr.double().tolist(),
            "widened": bool(widened),
        })
    Path(output).write_text(json.dumps(records))


# ----------------------------------------------------------------------------------------------
# Run under the project's venv.


def first_structures(count: int, task_name: str = TASK):
    from prdnet.data.sources.matbench import open_matbench_task

    _, task = open_matbench_task(task_name, None)  # MATMINER_DATA from the environment
    frame = task.df.iloc[:count]
    return [(str(index), structure) for index, structure in zip(frame.index, frame["structure"])]


def released_graphs(structures, released_python: str, released_git: str) -> list[dict]:
    """The released code's graphs of ``structures``, each as its edge multiset in the stored cell."""
    from ase.db import connect
    from pymatgen.io.ase import AseAtomsAdaptor

    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "crystals.db"
        with connect(database) as db:
            for material_id, structure in structures:
                db.write(AseAtomsAdaptor.get_atoms(structure), material_id=material_id)
        source = Path(tmp) / "released"
        (source / "prdnet").mkdir(parents=True)
        for path in ("prdnet/__init__.py", "prdnet/graphs.py"):
            text = subprocess.run(["git", "--git-dir", released_git, "show", f"{COMMIT}:{path}"], check=True,
                                  capture_output=True, text=True).stdout
            (source / path).write_text(text)
        output = Path(tmp) / "released.json"
        subprocess.run([released_python, __file__, "--released-run", str(database), str(source), str(output)],
                       check=True)
        records = json.loads(output.read_text())
    graphs = []
    for (material_id, structure), record in zip(structures, records, strict=True):
        assert record["material_id"] == material_id
        u, v = (np.array(side, dtype=np.int64) for side in record["edge_index"])
        displacement = np.array(record["edge_attr"], dtype=float).reshape(-1, 3)
        frac = structure.frac_coords
        # r_v + n − r_u = displacement L⁻¹ (edge_attr is float32 in the released graph)
        fractional = np.linalg.solve(structure.lattice.matrix.T, displacement.T).T
        image = fractional - (frac[v] - frac[u])
        rounded = np.rint(image)
        assert np.abs(image - rounded).max(initial=0.0) < 1e-4, material_id
        rows = edge_multiset(u, v, rounded.astype(np.int64))
        graphs.append({"material_id": material_id, "atoms": len(structure), "widened": record["widened"],
                       "edges": len(u), "rows": rows})
    return graphs


def constructed_crystals():
    """Crystals the released code widens (no MatBench phonons or jdft2d crystal is: every atom of
    all of them has 12 neighbours within 8 Å): ``widened-cubic-7A``, one atom in a 7 Å cube (the
    longest axis is shorter than the cutoff, so the retry doubles it to 16 Å; its 6 + 12 nearest
    images tie exactly), and ``widened-triclinic-KBr``, two atoms in a 6.8 × 7.2 × 15.4 Å triclinic
    cell (retried at the longest axis, 15.4 Å)."""
    from pymatgen.core import Lattice, Structure

    return [
        ("widened-cubic-7A", Structure(Lattice.cubic(7.0), ["Po"], [[0.0, 0.0, 0.0]])),
        ("widened-triclinic-KBr", Structure(
            Lattice.from_parameters(6.812345, 7.203117, 15.402871, 84.113, 97.402, 101.877), ["K", "Br"],
            [[0.112233, 0.205517, 0.087341], [0.597381, 0.671204, 0.268813]])),
    ]


PINNED = {
    "mb-phonons-0001": "2 atoms: mutual neighbours (each edge twice per direction), lattice self-edges that are "
                       "also k-NN edges",
    "mb-phonons-0003": "exact ties decided by the ASE round trip of the coordinates (148 edges from the stored "
                       "coordinates as given, 144 as the trainer reads them)",
    "mb-phonons-0010": "near ties decided by jarvis-tools' 5-decimal lattice (the cell's own distances keep other "
                       "neighbours at the 12th place)",
    "widened-cubic-7A": "widened (radius 8 → 16 Å): no lattice self-edges; 18 exactly tied self-images",
    "widened-triclinic-KBr": "widened (radius 8 → 15.4 Å, the longest axis): no lattice self-edges",
}
"""Crystals whose structure and whole edge multiset the fixture holds, and why each."""


def our_rows(structure, recipe) -> list[list[int]]:
    from prdnet.data.graphs import featurize_crystal

    crystal = featurize_crystal(structure.lattice.matrix, structure.frac_coords, np.array(structure.atomic_numbers),
                                recipe)
    graph = crystal.graph
    return edge_multiset(graph.target, graph.source, graph.offset)


def compare(structures, graphs, recipe) -> int:
    """Print crystal by crystal how ours and the released graph compare; the number equal."""
    equal = 0
    for (material_id, structure), graph in zip(structures, graphs):
        rows = our_rows(structure, recipe)
        same = rows == graph["rows"]
        equal += same
        flags = ("" if same else "  DIFFERENT") + ("  (widened)" if graph["widened"] else "")
        print(f"{material_id}: {graph['atoms']:3d} atoms, released {graph['edges']:5d} edges, ours "
              f"{sum(row[-1] for row in rows):5d}{flags}")
    return equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--released-python", default="/tmp/released/bin/python")
    parser.add_argument("--released-git", default="/work/.mirror/Bin-Cao+PRDNet/repo")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--task", default=TASK, help="a MatBench task in MATMINER_DATA (the fixture's: %(default)s)")
    parser.add_argument("--output", type=Path, default=FIXTURE)
    parser.add_argument("--released-run", nargs=3, metavar=("DATABASE", "SOURCE", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.released_run:
        released_run(*args.released_run)
        return

    from prdnet.data.recipes import graph_recipes
    from prdnet.models.registry import load_presets

    recipe = graph_recipes(load_presets())["prdnet_reference"]
    structures = first_structures(args.count, args.task) + constructed_crystals()
    graphs = released_graphs(structures, args.released_python, args.released_git)
    equal = compare(structures, graphs, recipe)
    first = graphs[: args.count]
    ours_total = sum(row[-1] for (_, structure) in structures[: args.count] for row in our_rows(structure, recipe))
    released_total = sum(graph["edges"] for graph in first)
    print(f"{args.task} first {args.count}: total edges released {released_total}, ours {ours_total}; "
          f"{equal}/{len(structures)} crystals equal (with {len(structures) - args.count} constructed ones)")
    pinned = []
    for (name, structure), graph in zip(structures, graphs):
        if name in PINNED:
            pinned.append({
                "name": name, "why": PINNED[name], "lattice": structure.lattice.matrix.tolist(),
                "species": [site.specie.symbol for site in structure], "frac_coords": structure.frac_coords.tolist(),
                "widened": graph["widened"], "edges": graph["edges"], "multiset": graph["rows"],
            })
    fixture = {
        "source": (f"Bin-Cao/PRDNet@{COMMIT} prdnet/graphs.py PygGraph.atom_dgl_multigraph as trainer.py L600-610 "
                   "calls it (k-nearest, cutoff 8.0, max_neighbors 12, use_canonize False, use_lattice True), on "
                   "jarvis Atoms made as trainer.py L527-537, L597 make them from an ASE database row; made by "
                   "benchmarks/released_graph_fixture.py (its docstring: venv and command)"),
        "edge_format": "[i, j, n0, n1, n2, multiplicity]: centre i, neighbour j, image n, r_j + n - r_i in the "
                       "stored fractional coordinates; digest = sha256 of the compact JSON of the sorted rows",
        "pinned": pinned,
        args.task: {
            "rows": f"the first {args.count}, in MatBench's order",
            "total_edges": released_total,
            "crystals": [
                {key: graph[key] for key in ("material_id", "atoms", "widened", "edges")}
                | {"digest": multiset_digest(graph["rows"])}
                for graph in first
            ],
        },
    }
    args.output.write_text(_dump(fixture))
    print(f"wrote {args.output}")


def _dump(fixture: dict) -> str:
    """JSON with one edge row or crystal per line (a small, reviewable file)."""
    text = json.dumps(fixture, indent=1)
    # the innermost lists (edge rows, coordinates) on one line each
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"


if __name__ == "__main__":
    main()
