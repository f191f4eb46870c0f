"""`rollrisk report --learned`: the lender's experiment and the learned policy on the strategy
review page, from a real chain on the session's scoring world (score -> logged-decisions ->
learn-policy -> report), and the page without --learned unchanged in structure."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from rollrisk.cli import main
from rollrisk.reports.strategy import (
    LEARNED_SECTION_IDS,
    LEARNED_SECTIONS_AFTER,
    SECTION_IDS,
    learned_rule_conditions,
)

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def learned_run(scoring_world, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("learned_report")
    portfolio = scoring_world.portfolio
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        patch.chdir(root)  # the page shows paths relative to the working folder
        scores = root / "scores"
        argv = ["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
                "--as-of", AS_OF, "--out", str(scores)]  # fmt: skip
        assert main(argv) == 0
        logged = root / "logged.parquet"
        argv = ["logged-decisions", "--model", scoring_world.model_uri, "--data", str(portfolio),
                "--horizon", "3", "--out", str(logged)]  # fmt: skip
        assert main(argv) == 0
        learned = root / "learned"
        argv = ["learn-policy", "--logged", str(logged),
                "--experiments", str(portfolio / "experiments.yaml"),
                "--rule-features", "start_bucket,risk_band,segment",
                "--model-features", "probability,dpd,amount_overdue,exposure",
                "--max-depth", "2", "--bootstrap", "200", "--out", str(learned)]  # fmt: skip
        assert main(argv) == 0
        pages = {}
        for name, extra in (("plain", []), ("learned", ["--learned", str(learned)])):
            pages[name] = root / f"{name}.html"
            argv = ["report", "--scores", str(scores), "--data", str(portfolio),
                    "--out", str(pages[name]), "--sample-per-segment", "20", "--examples", "1",
                    "--no-mlflow", *extra]  # fmt: skip
            assert main(argv) == 0
    evaluation = json.loads((learned / "policy_learning.json").read_text())
    rules = yaml.safe_load((learned / "learned_rules.yaml").read_text())
    return pages, evaluation, rules, scores


def _section(text: str, section_id: str) -> str:
    found = re.search(rf'<section id="{section_id}">(.*?)</section>', text, re.S)
    assert found, f"no section {section_id}"
    return found.group(1)


def test_the_page_without_learned_keeps_its_sections_and_with_it_adds_two(learned_run):
    pages, *_ = learned_run
    plain = re.findall(r'<section id="([^"]+)">', pages["plain"].read_text(encoding="utf-8"))
    assert plain == list(SECTION_IDS)
    # and says in its summary that no learned policy is shown (English and Chinese)
    summary = _section(pages["plain"].read_text(encoding="utf-8"), "summary")
    assert "No policy learnt from the lender&#x27;s experiment is shown" in summary
    assert "本页未展示从我司实验中学习的策略" in summary
    assert "Policy learnt from the lender" not in summary
    learned = re.findall(r'<section id="([^"]+)">', pages["learned"].read_text(encoding="utf-8"))
    after = SECTION_IDS.index(LEARNED_SECTIONS_AFTER) + 1
    assert learned == [*SECTION_IDS[:after], *LEARNED_SECTION_IDS, *SECTION_IDS[after:]]


def test_the_experiment_section_shows_every_arm_of_the_readout_in_both_languages(learned_run):
    pages, evaluation, *_ = learned_run
    section = _section(pages["learned"].read_text(encoding="utf-8"), "experiment")
    readout = evaluation["experiment_readout"]
    assert readout is not None and readout["arms"], "the scoring world's lender explores"
    assert "(control)" in section and "对照组" in section and "实验组" in section
    assert f"<td>{readout['control']['accounts']:,}</td>" in section
    for arm in readout["arms"]:
        gap = f"{arm['versus_control']:+,.0f} [{arm['ci_low']:+,.0f} to {arm['ci_high']:+,.0f}]"
        assert gap in section, arm["bundle"]
        assert f"{arm['mean']:,.0f}" in section
    significant = sum(bool(arm["significant"]) for arm in readout["arms"])
    if significant:
        assert "significantly better" in section and "显著优于" in section
        # and with several arms, how many would look significant by chance alone
        assert f"about {0.05 * len(readout['arms']):.1f} of them" in section
    else:  # the sentence says the experiment is too small and how many accounts each arm had
        assert "too small to tell them apart" in section and "无法区分" in section
        fewest = min(arm["accounts"] for arm in readout["arms"])
        assert f"{fewest:,}" in section
    # how large a gap the experiment could see, from the readout's own intervals
    gaps = sorted(arm["detectable_gap"] for arm in readout["arms"])
    assert "How large a gap could this experiment see?" in section and "本实验能看出" in section
    assert f"±{gaps[len(gaps) // 2]:,.0f} CNY" in section


def test_the_learned_section_shows_the_estimate_in_money_and_every_rule(learned_run):
    pages, evaluation, rules, scores = learned_run
    text = pages["learned"].read_text(encoding="utf-8")
    section = _section(text, "learned-policy")
    uplift = evaluation["evaluation"]["uplift_vs_current"]
    accounts = int(
        json.loads((scores / "current" / "manifest.json").read_text())["counts"]["scored"]
    )
    if uplift["ci_low"] == uplift["ci_high"] == 0.0:  # every rule keeps the lender's queue
        # said as no change, not as "+0 CNY (95 % CI +0 to +0)"
        assert "No change proposed: every rule keeps" in section and "未建议任何改变" in section
        assert "Every rule keeps what the lender does now" in section
        assert "(95 % CI +0 to +0)" not in section and "+0至+0" not in section
    else:
        per_decision = f"{uplift['value']:+,.0f} CNY (95 % CI {uplift['ci_low']:+,.0f} to "
        assert per_decision in section
        assert f"{uplift['value'] * accounts:+,.0f} CNY" in section  # for the book scored today
        assert f"{uplift['value']:+,.0f}元" in section  # and in Chinese
        if uplift["ci_low"] <= 0 <= uplift["ci_high"]:
            assert "not shown to be better than" in section and "未被证明优于" in section
    for rule in rules["rules"]:
        assert f'<td class="t">{rule["id"]}</td>' in section
    # the learning half's gains, weighted by each rule's decisions, beside the held-out figure
    weighted, decisions = 0.0, 0
    for rule in rules["rules"]:
        values = rule["estimated_value_per_decision"]
        if rule["give"] in values:
            weighted += (values[rule["give"]] - values["policy"]) * rule["learning_decisions"]
        decisions += rule["learning_decisions"]
    flattered = weighted / decisions > uplift["value"]
    assert ("trust the held-out figure" in section) == flattered
    if flattered:
        assert f"{weighted / decisions:+,.0f} CNY per decision" in section
    assert "controlled rollout" in section and "受控试点" in section
    assert "learned/learned_rules.yaml" in section  # relative to the working folder
    origin = evaluation["provenance"]["logged"]  # and what the rules were learnt from
    assert (
        f"Learnt {evaluation['provenance']['learned_at'][:10]} from logged.parquet "
        f"({origin['decisions_used']:,} first decisions, as-of {origin['as_of_first']} to "
        f"{origin['as_of_last']})" in section
    )
    assert not re.search(r"(?<![\w.])/(tmp|work|home|root|usr|var)/", text)
    summary = _section(text, "summary")
    assert "Policy learnt from the lender" in summary
    assert "No policy learnt" not in summary
    # rules that all keep what is done now propose no change: no "+0 (95 % CI +0 to +0)"
    kept = uplift["ci_low"] == uplift["ci_high"] == 0.0
    assert ("experiment: no change proposed: every rule keeps" in summary) == kept
    assert "(95 % CI +0 to +0)" not in summary


def test_learned_rule_conditions_read_as_words_and_drop_what_restricts_nothing():
    from rollrisk.features.registry import FEATURE_SET

    when = {
        "start_bucket": {"in": ["M1", "M2", "M3"]},  # every bucket: no condition
        "risk_band": {"in": ["high"]},
        "dpd": {"gt": 13.5},
    }
    applies_to = {"start_bucket": ["M1", "M2", "M3"], "risk_band": ["high", "low", "medium"]}
    words = learned_rule_conditions(when, applies_to, FEATURE_SET)
    assert words == [
        ("the risk band is high", "风险等级为高"),
        ("days past due at the as-of date is more than 13", "观察日逾期天数大于13"),
    ]


def test_report_refuses_a_learned_folder_without_the_learner_s_files(learned_run, tmp_path, capsys):
    *_, scores = learned_run
    empty = tmp_path / "not-learned"
    empty.mkdir()
    argv = ["report", "--scores", str(scores), "--data", "unused", "--learned", str(empty),
            "--out", str(tmp_path / "page.html"), "--no-mlflow"]  # fmt: skip
    assert main(argv) == 2
    assert "policy_learning.json is missing" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_learned_sections_render_in_headless_chromium(learned_run, tmp_path):
    pages, *_ = learned_run
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--dump-dom", pages["learned"].resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    for section in LEARNED_SECTION_IDS:
        assert f'id="{section}"' in done.stdout


def test_a_learned_range_names_its_subject_once_and_amounts_are_whole_cny():
    from rollrisk.features.registry import FEATURE_SET

    when = {"dpd": {"gt": 13.5, "le": 40.5}, "amount_overdue": {"gt": 3239.685}}
    words = learned_rule_conditions(when, {}, FEATURE_SET)
    assert words[0] == (
        "days past due at the as-of date is more than 13 and at most 40",
        "观察日逾期天数大于13且不超过40",
    )
    assert words[1] == ("the amount overdue (CNY) is more than 3240", "逾期金额(元)大于3240")


def test_a_learned_category_list_is_said_the_shorter_way():
    from rollrisk.features.registry import FEATURE_SET

    applies_to = {"segment": ["capacity_shock", "forgetful", "general", "seasonal"]}
    all_but_general = {"segment": {"in": ["capacity_shock", "forgetful", "seasonal"]}}
    assert learned_rule_conditions(all_but_general, applies_to, FEATURE_SET) == [
        ("the segment is not general (no driver evidence)", "客群不是一般(无明确驱动因素)")
    ]
    # levels the rules file does not list for the feature are said as they are
    assert learned_rule_conditions(all_but_general, {}, FEATURE_SET)[0][0].startswith(
        "the segment is one of hit by a hardship"
    )
    two = {"segment": {"in": ["capacity_shock", "forgetful"]}}
    assert learned_rule_conditions(two, applies_to, FEATURE_SET)[0][0].startswith(
        "the segment is one of hit by a hardship"
    )


def test_report_refuses_a_learned_folder_from_another_portfolio(learned_run, tmp_path, capsys):
    """learn-policy records the portfolio its logged decisions came from (logged-decisions'
    fingerprint of it); the page refuses to show another book's experiment beside these
    scores."""
    pages, evaluation, _, scores = learned_run
    fingerprint = evaluation["provenance"]["logged"]["data_fingerprint"]
    assert fingerprint is not None  # the chain recorded it
    learned = pages["learned"].parent / "learned"
    other = tmp_path / "other-learned"
    shutil.copytree(learned, other)
    document = json.loads((other / "policy_learning.json").read_text())
    document["provenance"]["logged"]["data_fingerprint"] = "0" * len(fingerprint)
    (other / "policy_learning.json").write_text(json.dumps(document))
    argv = ["report", "--scores", str(scores), "--data", "unused", "--learned", str(other),
            "--out", str(tmp_path / "page.html"), "--no-mlflow"]  # fmt: skip
    assert main(argv) == 2
    assert "its logged decisions come from another portfolio" in capsys.readouterr().err
    assert not (tmp_path / "page.html").exists()
