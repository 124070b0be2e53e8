"""katib/ner-asha.yaml and ner-bohb.yaml run to the end against `kftune katib serve` over real gRPC,
driven by a simulated Katib controller (service_sim.py: the request sizes, hidden trials and
exactly-N rule of Katib's controllers)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import grpc
import pytest
from service_sim import KatibSim

from kftune.hpo import LABEL_BRACKET, LABEL_CONFIG, LABEL_PARENT, LABEL_RUNG, Problem
from kftune.katib import service
from kftune.katib.experiment import Experiment, load_experiment
from kftune.katib.service_rules import END_MARKERS, MARK_EXHAUSTED, MARK_WAITING, katib_errors

pytestmark = pytest.mark.server
KATIB = Path(__file__).resolve().parents[2] / "katib"
BUDGETS = {0: "1", 1: "3", 2: "9"}


@pytest.fixture(scope="module")
def channel():
    running = service.start_server("127.0.0.1", 0)
    with grpc.insecure_channel(running.address) as ch:
        yield ch
    running.stop(0)


def without_resource(a: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in a.items() if k != "num_epochs"}


def variant(name: str, **changes) -> Experiment:
    """The file's Experiment with spec fields / algorithm settings changed (None removes)."""
    raw = copy.deepcopy(load_experiment(KATIB / name).raw)
    spec = raw["spec"]
    settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    for key, value in changes.items():
        if key in ("maxTrialCount", "parallelTrialCount"):
            spec[key] = value
        elif value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    spec["algorithm"]["algorithmSettings"] = [{"name": k, "value": v} for k, v in settings.items()]
    return Experiment(raw)


def check_asha_call(call, eta: int = 3) -> None:
    """Li et al.'s rule, re-derived from exactly the trials this request carried: each promotion
    is a top-1/eta configuration of the rung below not yet promoted; a new configuration only when
    nothing was promotable."""
    results: dict[int, list[tuple[float, int, str]]] = {}
    present: dict[int, set[str]] = {}
    for t in call.visible:
        k = int(t.labels[LABEL_RUNG])
        present.setdefault(k, set()).add(t.labels[LABEL_CONFIG])
        if t.status == "Succeeded":
            results.setdefault(k, []).append((-t.metrics["eval_f1"], int(t.labels[LABEL_CONFIG]), t.name))
        elif not t.pending:
            results.setdefault(k, []).append((math.inf, int(t.labels[LABEL_CONFIG]), t.name))
    promotable = {}
    for k, rs in results.items():
        ranked = sorted(rs)
        promotable[k] = {name for loss, _, name in ranked[: len(ranked) // eta] if math.isfinite(loss)}
    for assignments, labels in call.reply:
        k = int(labels[LABEL_RUNG])
        assert assignments["num_epochs"] == BUDGETS[k]
        if k == 0:
            assert labels[LABEL_PARENT] == ""
            for j in (0, 1):
                names = {t.name: t for t in call.visible}
                waiting = [
                    n
                    for n in promotable.get(j, ())
                    if names[n].labels[LABEL_CONFIG] not in present.get(j + 1, ())
                ]
                assert not waiting, f"a new configuration while {waiting} could be promoted"
        else:
            parent = labels[LABEL_PARENT]
            assert parent in promotable.get(k - 1, set()), "promoted outside the top 1/eta of the rung below"
            assert labels[LABEL_CONFIG] not in present.get(k, set()), "promoted twice"
        present.setdefault(k, set()).add(labels[LABEL_CONFIG])


def test_ner_asha_runs_to_max_trial_count(channel):
    """The file as it is: every request filled, Succeeded at maxTrialCount with ~50 configurations
    (the numbers ner-asha.yaml quotes)."""
    exp = load_experiment(KATIB / "ner-asha.yaml")
    assert katib_errors(Problem.from_katib(exp.spec)) == []
    sim = KatibSim(exp, channel)
    assert sim.run() == "Succeeded" and sim.reason == "ExperimentMaxTrialsReached"
    assert sim.errors() == []  # exactly-N held on every request
    assert len(sim.trials) == exp.max_trial_count == 110
    assert max(c.asked for c in sim.calls) == exp.parallel_trial_count == 4
    assert [len(sim.at_rung(k)) for k in range(3)] == [51, 35, 24]
    check_promotions(sim)


def test_ner_asha_with_trials_katib_hides_from_the_service(channel):
    """A rung-0 trial and the first promotion end with their metrics unavailable: Katib leaves
    them out of every request (and, not counting them as completed, creates one more trial each)."""
    exp = load_experiment(KATIB / "ner-asha.yaml")
    hidden: list[str] = []

    def unavailable(t) -> bool:
        """Hide the first new configuration that holds the highest configuration id when it ends
        (ASHA numbers new configurations max(seen) + 1 and would reuse it), and the first promotion."""
        rungs = [sim.by_name[n].labels[LABEL_RUNG] for n in hidden]
        newest = max(int(x.labels[LABEL_CONFIG]) for x in sim.trials)
        if (
            "0" not in rungs
            and t.index >= 8
            and t.labels[LABEL_RUNG] == "0"
            and int(t.labels[LABEL_CONFIG]) == newest
        ) or ("1" not in rungs and t.labels[LABEL_RUNG] == "1"):
            hidden.append(t.name)
            return True
        return False

    sim = KatibSim(exp, channel, unavailable=unavailable)
    assert sim.run() == "Succeeded" and sim.errors() == []
    assert len(hidden) == 2 and len(sim.trials) == exp.max_trial_count + len(hidden)
    check_promotions(sim)
    for name in hidden:
        gone = sim.by_name[name]
        assert gone.condition == "MetricsUnavailable"
        later = sim.calls[gone.ended :]
        assert later and all(name not in {t.name for t in c.visible} for c in later)
    rung0, promoted = sorted((sim.by_name[n] for n in hidden), key=lambda t: t.labels[LABEL_RUNG])
    # the hidden configuration's id was not given to a new configuration ...
    assert [t.name for t in sim.trials if t.labels[LABEL_CONFIG] == rung0.labels[LABEL_CONFIG]] == [
        rung0.name
    ]
    # ... and the hidden promotion was tried again (ASHA saw its configuration as not promoted)
    again = [t for t in sim.at_rung(1) if t.labels[LABEL_CONFIG] == promoted.labels[LABEL_CONFIG]]
    assert len(again) == 2 and again[1].condition == "Succeeded"


def check_promotions(sim) -> None:
    by_name = {t.name: t for t in sim.trials}
    configs: dict[str, dict[str, str]] = {}
    for t in sim.trials:
        rung = int(t.labels[LABEL_RUNG])
        assert t.assignments["num_epochs"] == BUDGETS[rung]
        # a configuration id names one set of hyperparameters
        mine = configs.setdefault(t.labels[LABEL_CONFIG], without_resource(t.assignments))
        assert mine == without_resource(t.assignments)
        if rung == 0:
            assert t.labels[LABEL_PARENT] == ""
            continue
        parent = by_name[t.labels[LABEL_PARENT]]
        assert parent.condition == "Succeeded" and parent.index < t.index
        assert int(parent.labels[LABEL_RUNG]) == rung - 1
        assert parent.labels[LABEL_CONFIG] == t.labels[LABEL_CONFIG]
        assert without_resource(parent.assignments) == without_resource(t.assignments)
    for call in sim.calls:
        check_asha_call(call)


def test_asha_with_a_configuration_cap_stalls_katib_hence_the_validation_rule(channel):
    """maxTrialCount <= num_configurations x rungs (the most trials 12 configurations can give) is
    not enough: the last promotions wait for running trials, Katib asks for more than can be
    promoted, and with nothing running the experiment can never finish. ValidateAlgorithmSettings
    rejects this; the simulation bypasses it as an un-revalidated restart would."""
    exp = variant("ner-asha.yaml", num_configurations="12", maxTrialCount=36)
    assert katib_errors(Problem.from_katib(exp.spec))
    sim = KatibSim(exp, channel)
    assert sim.run() == "stalled"
    assert len(sim.trials) < 36 and not any(t.condition == "Running" for t in sim.trials)
    codes = [(c.code, c.message.split(":")[0] + ":" + c.message.split(":")[1]) for c in sim.errors()]
    assert codes[0] == (grpc.StatusCode.UNAVAILABLE, MARK_WAITING)  # first it waits for running trials
    last = sim.errors()[-1]
    assert last.code == grpc.StatusCode.FAILED_PRECONDITION and last.message.startswith(END_MARKERS)
    assert last.message.startswith(MARK_EXHAUSTED) and f"of the {last.asked} trials" in last.message
    # with the cap but maxTrialCount <= num_configurations, it runs to its end like any Katib search
    ok = variant("ner-asha.yaml", num_configurations="12", maxTrialCount=12)
    assert katib_errors(Problem.from_katib(ok.spec)) == []
    sim = KatibSim(ok, channel)
    assert sim.run() == "Succeeded" and sim.errors() == [] and len(sim.trials) == 12


def test_ner_bohb_runs_to_max_trial_count_with_synchronous_brackets(channel):
    exp = load_experiment(KATIB / "ner-bohb.yaml")
    sim = KatibSim(exp, channel)
    assert sim.run() == "Succeeded" and sim.errors() == []
    assert len(sim.trials) == exp.max_trial_count == 60
    brackets: dict[str, list] = {}
    for t in sim.trials:
        brackets.setdefault(t.labels[LABEL_BRACKET], []).append(t)
    # three Hyperband rounds of hpbandster's brackets 9-3-1, 3-1, 3 on budget levels 0-1-2, 1-2, 2
    shapes = {b: [t.labels[LABEL_RUNG] for t in ts] for b, ts in brackets.items()}
    for b, rungs in shapes.items():
        expected = {0: ["0"] * 9 + ["1"] * 3 + ["2"], 1: ["1"] * 3 + ["2"], 2: ["2"] * 3}[int(b) % 3]
        assert sorted(rungs) == expected, (b, rungs)
    by_name = {t.name: t for t in sim.trials}
    for call in sim.calls:
        visible = {t.name: t for t in call.visible}
        for assignments, labels in call.reply:
            if not labels[LABEL_PARENT]:
                continue
            parent = visible[labels[LABEL_PARENT]]
            stage = [
                t
                for t in call.visible
                if t.labels[LABEL_BRACKET] == labels[LABEL_BRACKET]
                and t.labels[LABEL_RUNG] == parent.labels[LABEL_RUNG]
            ]
            assert all(t.status == "Succeeded" for t in stage), "promoted before its stage finished"
            assert int(labels[LABEL_RUNG]) == int(parent.labels[LABEL_RUNG]) + 1
            assert without_resource(assignments) == without_resource(by_name[parent.name].assignments)
            best = sorted(stage, key=lambda t: -t.metrics["eval_f1"])
            size = sum(
                1 for t in brackets[labels[LABEL_BRACKET]] if t.labels[LABEL_RUNG] == labels[LABEL_RUNG]
            )
            assert parent.name in {t.name for t in best[:size]}, "promoted outside the stage's best"
