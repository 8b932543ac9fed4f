"""A reject's reason names where its rule comes from, and the summary groups reasons by their whole
kind (never cut inside brackets)."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from prdnet.data.prepare import reason_class
from prdnet.data.sources import Entry, Task
from prdnet.data.validate import ValidationRules, validate_entry

NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_a_reason_kind_is_its_text_up_to_the_first_colon_or_bracket():
    assert reason_class("atoms too close: 0.3 Å") == "atoms too close"
    assert reason_class("no usable target for any task (formation_energy: implausible target: 1e+30 outside "
                        "[-10.0, 10.0] (validation.target_bounds.formation_energy))") == "no usable target for any task"
    assert reason_class("malformed structure") == "malformed structure"


def test_a_bound_from_the_users_target_block_is_cited_as_that_key():
    task = Task("e_form", "regression", "eV/atom", "column e", (-5.0, 5.0), bounds_key="targets.e_form.bounds")
    (reject,) = validate_entry(Entry("x1", NACL, {"e_form": 9.0}), ["e_form"], ValidationRules(), {"e_form": task})
    assert "outside [-5.0, 5.0] (targets.e_form.bounds)" in reject.reason


def test_a_bound_from_the_validation_block_is_cited_as_that_key():
    rules = ValidationRules(target_bounds={"e_form": [-1.0, 1.0]})
    task = Task("e_form", "regression", "eV/atom", "column e", (-5.0, 5.0), bounds_key="targets.e_form.bounds")
    (reject,) = validate_entry(Entry("x1", NACL, {"e_form": 2.0}), ["e_form"], rules, {"e_form": task})
    assert "outside [-1.0, 1.0] (validation.target_bounds.e_form)" in reject.reason


def test_a_sources_own_range_says_which_key_replaces_it():
    task = Task("band_gap", "regression", "eV", "", (0.0, 30.0))
    (reject,) = validate_entry(Entry("x1", NACL, {"band_gap": -1.0}), ["band_gap"], ValidationRules(), {"band_gap": task})
    assert "(the source's plausible range; validation.target_bounds.band_gap replaces it)" in reject.reason


def test_a_boolean_is_a_class_label_not_a_regression_target():
    from prdnet.data.validate import target_problem

    assert target_problem(True, (None, None), "regression").startswith("not a number: True (a boolean")
    assert target_problem(True, (None, None), "classification") is None


def test_a_target_beyond_float32_is_rejected_even_without_bounds():
    from prdnet.data.validate import target_problem

    assert target_problem(1e39, (None, None)).startswith("target beyond float32: 1e+39")
    assert target_problem(1e30, (None, None)) is None  # representable: only bounds can reject it


def test_a_diverging_loss_names_the_training_targets_range_and_flags_extreme_ones():
    import numpy as np

    from prdnet.training.loop import targets_range_note

    calm = targets_range_note(np.linspace(-1.0, 1.0, 101), "eV")
    assert calm == "; the training targets span [-1, 1] eV"
    extreme = targets_range_note(np.append(np.linspace(-1.0, 1.0, 100), 1e30), "eV")
    assert "span [-1, 1e+30] eV, some" in extreme and "check the data for absurd targets" in extreme
