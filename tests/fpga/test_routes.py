"""Student kinds and routes (no builds, a second or two): which route each kind takes, `kind:` aliases, the
one-line errors for an unknown kind, the rules' student names, and the Pareto front's dominance logic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jetfm.config import load_config
from jetfm.fpga.kinds import KINDS, kind_of, split_kind
from jetfm.fpga.pareto import pareto_optimal, pareto_rows, plot_pareto
from jetfm.fpga.routes import route_of
from jetfm.fpga.rules import student_pattern
from jetfm.fpga.students import JetMLPStudent, build_student

CONFIG = Path(__file__).parents[2] / "config" / "config.yaml"


def test_kinds_map_to_routes_and_a_kind_alias_takes_its_kinds_route() -> None:
    assert {k: route_of(k).name for k in ("jet_mlp", "deepsets", "attention", "hgq_mlp")} == {
        "jet_mlp": "torch_core", "deepsets": "torch_core", "attention": "hgq", "hgq_mlp": "hgq",
    }  # fmt: skip
    assert route_of("small_mlp", {"kind": "jet_mlp", "dims": [4]}).name == "torch_core"
    assert route_of("hgq_mlp_b1", {"kind": "hgq_mlp"}).quantiser == "HGQ2"
    assert split_kind("small_mlp", {"kind": "jet_mlp", "dims": [4]}) == ("jet_mlp", {"dims": [4]})
    student = build_student("small_mlp", 17, 8, 10, {"kind": "jet_mlp", "dims": [4]})  # kind not passed on
    assert isinstance(student, JetMLPStudent) and student.core[0].out_features == 4


def test_an_unknown_kind_fails_in_one_line_naming_field_value_and_expectation() -> None:
    with pytest.raises(
        ValueError, match=r"^fpga\.sizes\.s1\.kind is 'mlp', not a student kind \(expected one"
    ):
        kind_of("s1", {"kind": "mlp"})
    with pytest.raises(
        ValueError, match=r"^student 'foo' is not a student kind and has no fpga\.sizes\.foo\.kind"
    ):
        build_student("foo", 17, 8, 10, {})
    for overrides, field in (
        ({"fpga.students": ["jet_mlp", "foo"]}, "student 'foo' is not a student kind"),
        ({"fpga.sizes.b0": {"kind": "hgqmlp"}}, "fpga.sizes.b0.kind: 'hgqmlp' is not one of"),
        ({"fpga.overrides.jet_mpl": {"qat": {"lr": 0.1}}}, "student 'jet_mpl' is not a student kind"),
    ):
        with pytest.raises(ValueError) as err:
            load_config(CONFIG, overrides)
        message = str(err.value)
        assert "\n" not in message and field in message and "hgq_mlp" in message, message
    given = {"fpga.students": ["jet_mlp", "b0"], "fpga.sizes.b0": {"kind": "hgq_mlp"},
             "fpga.overrides.b0": {"qat": {"lr": 0.002}}}  # fmt: skip
    config = load_config(CONFIG, given)
    assert config["fpga"]["sizes"]["b0"] == {"kind": "hgq_mlp"}
    assert config["fpga"]["overrides"]["b0"] == {"qat": {"lr": 0.002}}


def test_the_rules_accept_exactly_the_configured_names() -> None:
    pattern = student_pattern(["jet_mlp", "hgq_mlp_b0", "hgq_mlp_b1"])
    assert all(re.fullmatch(pattern, s) for s in ("jet_mlp", "hgq_mlp_b0", "hgq_mlp_b1"))
    assert not any(re.fullmatch(pattern, s) for s in ("deepsets", "hgq_mlp_b", "jet_mlp/x"))


def test_pareto_flags_the_undominated_students() -> None:
    points = [(0.80, 1000), (0.70, 200), (0.75, 1500), (0.70, 300), (0.80, 1000), (0.90, None), (0.60, 100)]
    # (0.75, 1500) is beaten by (0.80, 1000); (0.70, 300) by (0.70, 200); equal points do not dominate each
    # other; no LUT count: not on the front and not dominating (0.90 would beat everyone)
    assert pareto_optimal(points) == [True, True, False, False, True, False, True]


OPERATIONS = {  # emulation.json's `operations` of a pruned torch core (hls4ml's precision strings)
    "layers": [
        {"nonzero_weights": 40, "positions": 1, "input_type": "fixed<16,6>", "weight_type": "fixed<8,1>"},
        {"nonzero_weights": 10, "positions": 1, "input_type": "ufixed<8,3,RND_CONV,SAT>",
         "weight_type": "fixed<6,1>"},
    ]
}  # fmt: skip


def test_pareto_rows_and_figure_from_the_stage_outputs(tmp_path: Path) -> None:
    def emulation(student: str, acc: float, **keys: object) -> dict:
        summary = {"emulation": {"accuracy": acc}, "float_teacher": {"accuracy": 0.8}}
        return {"student": student, "summary": summary, **keys}

    emulations = [
        emulation("jet_mlp", 0.6, operations=OPERATIONS),  # from before the routes: kind from the name
        emulation("b0", 0.64, kind="hgq_mlp", route="hgq", ebops=5000),
        emulation("b1", 0.62, kind="hgq_mlp", route="hgq", ebops=900),
    ]
    syntheses = [
        {
            "student": "jet_mlp",
            "open_source": {"status": "done", "resources": {"LUT": 3000}, "latency_ns": 15},
        },
        {"student": "b0", "open_source": {"status": "written", "da4ml_cost_estimate_luts": 1200}},
        {"student": "b1", "open_source": {"status": "skipped"}},
    ]
    rows = pareto_rows(emulations, syntheses)
    assert [(r["quantiser"], r["luts"], r["luts_source"], r["pareto_optimal"]) for r in rows] == [
        ("hand-written fixed point", 3000, "yosys", False),
        ("HGQ2", 1200, "da4ml estimate", True),
        ("HGQ2", "", "", False),
    ]
    assert rows[0]["ebops"] == 40 * 16 * 8 + 10 * 8 * 6 and rows[0]["ebops_source"].startswith("non-zero")
    assert rows[1]["ebops"] == 5000 and rows[1]["ebops_source"].startswith("HGQ2") and rows[2]["ebops"] == 900
    assert rows[1]["accuracy_over_teacher"] == pytest.approx(0.8)
    plot_pareto(rows, tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_the_config_schema_lists_the_same_kinds() -> None:
    from jetfm.config import _schema

    sizes = _schema()["properties"]["fpga"]["properties"]["sizes"]
    assert sizes["additionalProperties"]["properties"]["kind"]["enum"] == list(KINDS)
