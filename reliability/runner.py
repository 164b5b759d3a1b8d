"""Runs the scenarios' trials one after the other, each in a world of its own, and counts: outcomes
(completed / failed clearly / retried through / unexpected / harness error) and invariant violations."""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reliability import invariants
from reliability.procs import TrialError
from reliability.scenarios import SCENARIOS, Scenario
from reliability.trial import Outcome, Trial

FALLBACK_SPAN = 2.0  # seconds: an undisturbed stop of three fake hosts on an idle machine takes 1.4-2
OUTCOMES = ("completed", "failed clearly", "retried through", "unexpected", "error")


@dataclass
class Result:
    scenario: str
    variant: str
    trial: int
    outcome: str
    detail: str = ""
    fault_at: float | None = None
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    controller_restarts: int = 0
    span: float = 0.0  # the undisturbed stop's span the fault moment was drawn from

    @property
    def bad(self) -> bool:
        return bool(self.violations) or self.outcome in ("unexpected", "error")


def calibrate(scenario: Scenario, variant: str, root: Path) -> float:
    """The span of an undisturbed stop in this scenario's world: stop call to SUCCESSFUL."""
    with scenario.world(root, variant) as world:
        trial = Trial(world)
        began = time.monotonic()
        task_id = trial.stop()
        if trial.finish(task_id, 60) != "SUCCESSFUL":
            raise TrialError(f"the undisturbed stop failed: {world.ctl.failed_logs(task_id)[-300:]}")
        return time.monotonic() - began


def run_one(scenario: Scenario, variant: str, n: int, root: Path, span: float, seed: str) -> Result:
    rng = random.Random(f"{seed}-{scenario.name}-{variant}-{n}")
    began = time.monotonic()
    result = Result(scenario.name, variant, n, "error", span=round(span, 2))
    try:
        with scenario.world(root, variant) as world:
            trial = Trial(world)
            try:
                outcome = scenario.drive(trial, variant, rng, span)
            except TrialError as exc:
                outcome = Outcome("error", str(exc))
            result.violations = invariants.check(trial)
            result.outcome, result.detail = outcome.kind, outcome.detail
            result.fault_at = None if trial.fault_at is None else round(trial.fault_at, 3)
            result.notes = [n for n in trial.notes if n]
            result.controller_restarts = world.ctl.restarts
            if world.ctl.exits:
                result.notes.append(
                    f"controller exited {world.ctl.exits} and was restarted, as systemd would"
                )
    except Exception as exc:  # a harness failure: reported, counted, and the run goes on
        result.outcome, result.detail = "error", f"{type(exc).__name__}: {exc}"
        result.notes.append(traceback.format_exc(limit=3)[-600:])
    result.seconds = round(time.monotonic() - began, 1)
    return result


@dataclass
class Plan:
    trials: int
    only: list[str]
    stores: list[str] | None  # R1's variants
    root: Path
    seed: str
    span: float | None  # None: measured per scenario and variant
    keep: bool
    variants: list[str] | None = None  # only these variants (any scenario's)
    emit: Callable[[Result], None] = lambda r: print(json.dumps(asdict(r)), flush=True)


def run(plan: Plan) -> tuple[list[Result], dict[str, str]]:
    results: list[Result] = []
    skipped: dict[str, str] = {}
    for name in plan.only or list(SCENARIOS):
        scenario = SCENARIOS[name]
        why = scenario.unavailable()
        if why:
            skipped[name] = why
            continue
        variants = scenario.variants
        if name == "R1" and plan.stores:
            variants = tuple(v for v in variants if v in plan.stores)
        if plan.variants:
            variants = tuple(v for v in variants if v in plan.variants)
        for variant in variants:
            span = plan.span
            if not scenario.timed:
                span = 0.0
            elif span is None:
                try:
                    span = calibrate(scenario, variant, plan.root / f"{name}-{variant}-calibration")
                except Exception as exc:  # the trials still run, on a span said in each result
                    print(
                        f"{name} {variant}: calibration failed ({exc}); span {FALLBACK_SPAN}s",
                        file=sys.stderr,
                    )
                    span = FALLBACK_SPAN
            for n in range(1, plan.trials + 1):
                trial_root = plan.root / f"{name}-{variant}-{n}"
                result = run_one(scenario, variant, n, trial_root, span, plan.seed)
                plan.emit(result)
                results.append(result)
                if not result.bad and not plan.keep:
                    shutil.rmtree(trial_root, ignore_errors=True)
    return results, skipped


def table(results: list[Result], skipped: dict[str, str]) -> str:
    head = "| scenario | variant | trials | " + " | ".join(OUTCOMES) + " | violations |"
    lines = [head, "|" + "---|" * (4 + len(OUTCOMES))]
    keys = list(dict.fromkeys((r.scenario, r.variant) for r in results))
    for s, v in keys:
        mine = [r for r in results if (r.scenario, r.variant) == (s, v)]
        counts = [sum(r.outcome == o for r in mine) for o in OUTCOMES]
        lines.append(
            f"| {s} | {v} | {len(mine)} | "
            + " | ".join(map(str, counts))
            + f" | {sum(len(r.violations) for r in mine)} |"
        )
    lines += [f"| {s} | skipped: {why} | 0 |" + " |" * (len(OUTCOMES) + 1) for s, why in skipped.items()]
    return "\n".join(lines)
