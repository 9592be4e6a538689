"""The run names the robustness stage computes (jetfm.robustness.runs, relative to results/) land on the
directories the training rules write (jetfm.paths): otherwise robustness_evaluate asks for a checkpoint no
rule makes, or an ensemble member the robustness_member rule cannot match."""

from __future__ import annotations

from jetfm import paths
from jetfm.robustness import runs


def test_a_model_name_is_the_train_rules_run_and_its_members_the_member_rules() -> None:
    run = runs.run_of("mlp", "tiny")
    assert paths.run_dir(run) == paths.model_dir("tiny", "mlp")
    members = runs.member_runs(run, "tiny", {"models": ["mlp"], "members": 3})
    assert [paths.run_dir(m) for m in members] == [paths.member_dir("tiny", "mlp", k) for k in (1, 2)]
    assert runs.label_of(run, "tiny") == "mlp"


def test_a_path_name_is_any_run_under_results_such_as_a_fine_tuned_one() -> None:
    run = runs.run_of("finetune/tiny/scratch_1_0", "tiny")
    assert paths.run_dir(run) == paths.finetune_run_dir("tiny", "scratch", 1.0, 0)
    assert runs.member_runs(run, "tiny", {"models": ["mlp"], "members": 3}) == []


def test_wildcard_patterns_pass_through_unpadded() -> None:
    """Rules build output patterns with the same functions: a `{shard}` wildcard is not zero-padded."""
    held_out = paths.robustness_dir("tiny") + "/sim/QCD"
    assert paths.robustness_sim_file("tiny", "QCD", 3) == f"{held_out}/0003.views.root"
    assert paths.robustness_sim_file("tiny", "QCD", "{shard}") == f"{held_out}/{{shard}}.views.root"
    member = paths.member_dir("{dataset}", "{model}", "{member}")
    assert member == paths.model_dir("{dataset}", "{model}_seed{member}")
