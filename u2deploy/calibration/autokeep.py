"""`--keep-float auto`: the fewest MACs kept out of INT8 that meet a mask-quality target.

Candidates come from the sensitivity ranking (`sensitivity.measure_sensitivity`): every block and
every refined conv whose float version improved the mean IoU, most helpful first, with the refined
convs of a block tried before the whole block (fewer MACs). They are added one at a time and the
combined graph is judged in exact-INT8 emulation after each step, because the gains do not add up
exactly; the search stops at the first set that meets the target, then drops any member whose
removal keeps it met (cheapest gain first). Cost: one emulated run per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .mixed import float_convs
from .sensitivity import Emulator, Score, SensitivityReport, cached_score

#: the ranking is measured on the photos the full-INT8 graph scores worst on; the choice on all of them
RANK_PHOTOS = 3

__all__ = ["RANK_PHOTOS", "Target", "AutoChoice", "choose_float", "auto_choice"]


@dataclass(frozen=True)
class Target:
    """Mask IoU against the fp32 maps on the held-out photos: the mean and the worst photo."""

    mean_iou: float = 0.985
    worst_iou: float = 0.95

    def met(self, score: Score) -> bool:
        return score.mean_iou >= self.mean_iou and score.worst[1] >= self.worst_iou

    def describe(self) -> str:
        return f"mean IoU >= {self.mean_iou}, worst >= {self.worst_iou}"


@dataclass
class AutoChoice:
    """What `choose_float` kept float, what it cost and what it scored."""

    groups: list[str]
    nodes: list[str]
    macs_percent: float
    score: Score
    met: bool
    target: Target
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"target": {"mean_iou": self.target.mean_iou, "worst_iou": self.target.worst_iou},
                "met": self.met, "groups": self.groups, "nodes": self.nodes,
                "float_macs_percent": round(self.macs_percent, 2), "score": self.score.summary(),
                "steps": self.steps}  # fmt: skip


def _ordered(report: SensitivityReport) -> list[str]:
    """Candidates in trial order: refined convs of a block before the block, then by gain."""
    base = report.baseline.mean_iou
    helpful = [g for g in report.ranking() if report.alone_float[g].mean_iou > base]
    order: list[str] = []
    for group in helpful:
        if ":" in group:
            continue
        order += [g for g in helpful if g.startswith(group + ":")]
        order.append(group)
    return order


def choose_float(report: SensitivityReport, fp32_model: Any, qdq_model: Any, emulator: Emulator,
                 target: Target | None = None, log: Callable[[str], None] | None = None) -> AutoChoice:
    """Greedy, then pruned: the float groups that meet `target` with the fewest MACs found.

    Args:
        report: the sensitivity measurement of these two graphs.
        fp32_model, qdq_model: the fp32 graph and its calibrated Q/DQ graph.
        emulator: the photos and runner the target is judged on.
        target: the quality to reach (default `Target()`).
        log: receives one line per step.
    """
    target = target or Target()
    total = sum(m for g, m in report.macs.items() if ":" not in g) or 1
    chosen: list[str] = []
    baseline = report.full_baseline or report.baseline  # the ranking may have used only the worst photos
    if baseline.iou.keys() != set(emulator.names):
        baseline = emulator.score(qdq_model)
    score, steps = baseline, []

    def judge(groups: list[str]) -> Score:
        nodes = sorted({n for g in groups for n in report.groups[g]})
        if not nodes:
            return baseline
        key = "set:" + "|".join(nodes)  # on every photo: the full cache file, not the ranking's
        return cached_score(report.cache_path, key, lambda: emulator.score(float_convs(qdq_model, fp32_model, nodes)))

    for group in _ordered(report):
        if target.met(score):
            break
        if set(report.groups[group]) <= {n for g in chosen for n in report.groups[g]}:
            continue
        chosen = [g for g in chosen if not g.startswith(group + ":")] + [group]
        score = judge(chosen)
        steps.append({"add": group, **score.summary()})
        if log is not None:
            log(f"      + {group}: mean IoU {score.mean_iou:.4f}, worst {score.worst[1]:.4f}")
    if target.met(score):
        chosen, score = _prune(chosen, score, report, judge, target, steps)
    nodes = sorted({n for g in chosen for n in report.groups[g]})
    macs = sum(m for g, m in report.macs.items() if g in chosen)
    return AutoChoice(chosen, nodes, 100 * macs / total, score, target.met(score), target, steps)


def _prune(chosen: list[str], score: Score, report: SensitivityReport, judge: Callable[[list[str]], Score],
           target: Target, steps: list[dict[str, Any]]) -> tuple[list[str], Score]:
    """Drop members, most MACs first, as long as the target stays met."""
    for group in sorted(chosen, key=lambda g: -report.macs.get(g, 0)):
        if len(chosen) == 1:
            break
        trial = [g for g in chosen if g != group]
        trial_score = judge(trial)
        if target.met(trial_score):
            chosen, score = trial, trial_score
            steps.append({"drop": group, **trial_score.summary()})
    return chosen, score


def auto_choice(fp32_model: Any, qdq_model: Any, spec: Any, target: Target | None = None,
                progress: bool = True) -> AutoChoice:
    """`--keep-float auto` for one calibrated Q/DQ graph: the sensitivity ranking (alone float, the worst
    block refined; cached on disk), then `choose_float` on the held-out photos."""
    from .cache import say
    from .sensitivity import held_out_photos, measure_sensitivity

    emulator = Emulator(fp32_model, held_out_photos(), spec=spec)
    say(progress, f"      keep-float auto: ranking blocks on the {RANK_PHOTOS} worst of {len(emulator.names)} held-out "
                  "photos, choosing on all (exact INT8 emulation; cached)")
    log = (lambda line: say(True, line)) if progress else None
    report = measure_sensitivity(fp32_model, qdq_model, emulator=emulator, refine=1, both=False, log=log,
                                 rank_photos=RANK_PHOTOS)
    choice = choose_float(report, fp32_model, qdq_model, emulator, target, log=log)
    say(progress, f"      keep-float auto: {len(choice.nodes)} nodes float ({choice.macs_percent:.1f}% of the MACs), "
                  f"mean IoU {choice.score.mean_iou:.4f}, worst {choice.score.worst[1]:.4f}"
                  + ("" if choice.met else f" (target {choice.target.describe()} not met)"))
    return choice
