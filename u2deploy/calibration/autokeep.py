"""`--keep-float auto`: the fewest MACs kept out of INT8 that meet a mask-quality target.

INT8 errors of U2-Net's blocks do not add up: on the pretrained model, taking any one of stage1-3
back to float makes the rocket photo worse (IoU 0.896 -> 0.64 for stage2), because their errors
partly cancel others. So the search does not add float blocks to the full-INT8 graph by their
single gains; it grows the INT8 part from the float graph instead, block by block, largest MACs
first (ties: the smaller alone-INT8 drop of the sensitivity ranking, when measured), and keeps a
block in INT8 only when the graph still meets the target. Each step is judged in exact INT8
emulation on the photos the full-INT8 graph scores worst on (`RANK_PHOTOS`; stricter than all of
them), and the final choice on every held-out photo. Cost: one emulated run per block (17), cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .mixed import float_convs
from .sensitivity import Emulator, Score, SensitivityReport, cached_score

#: the ranking is measured on the photos the full-INT8 graph scores worst on; the choice on all of them
RANK_PHOTOS = 3

__all__ = ["RANK_PHOTOS", "Target", "AutoChoice", "choose_float", "block_report", "auto_choice"]


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


def _order(report: SensitivityReport) -> list[str]:
    """Blocks in trial order: largest MACs first; the smaller alone-INT8 drop first on ties."""
    blocks = [g for g in report.groups if ":" not in g]

    def drop(group: str) -> float:
        alone = report.alone_int8.get(group)
        return 1 - alone.mean_iou if alone is not None else 0.0

    return sorted(blocks, key=lambda g: (-report.macs.get(g, 0), drop(g)))


def choose_float(report: SensitivityReport, fp32_model: Any, qdq_model: Any, emulator: Emulator,
                 target: Target | None = None, log: Callable[[str], None] | None = None) -> AutoChoice:
    """The blocks to keep float: INT8 grown from the float graph while the target holds.

    Args:
        report: groups, MACs and baseline of these two graphs (`sensitivity.measure_sensitivity`, or
            `block_report` without the per-block runs).
        fp32_model, qdq_model: the fp32 graph and its calibrated Q/DQ graph.
        emulator: the photos and runner the final choice is judged on.
        target: the quality to reach (default `Target()`).
        log: receives one line per step.
    """
    target = target or Target()
    total = sum(m for g, m in report.macs.items() if ":" not in g) or 1
    full = report.full_baseline or report.baseline
    if set(full.iou) != set(emulator.names):
        full = emulator.score(qdq_model)
    worst = sorted(emulator.names, key=full.iou.get)[:RANK_PHOTOS]
    steps_emulator = emulator.subset(worst)
    steps_path = report.cache_path.with_name(report.cache_path.stem + "-steps.json") if report.cache_path else None

    def judge(groups: list[str], on: Emulator, path: Path | None) -> Score:
        nodes = sorted({n for g in groups for n in report.groups[g]})
        key = "set:" + "|".join(nodes)
        return cached_score(path, key, lambda: on.score(float_convs(qdq_model, fp32_model, nodes)))

    kept = [g for g in report.groups if ":" not in g]
    steps: list[dict[str, Any]] = []
    for group in _order(report):
        trial = [g for g in kept if g != group]
        score = judge(trial, steps_emulator, steps_path)
        accepted = target.met(score)
        kept = trial if accepted else kept
        steps.append({"int8": group, "kept": accepted, **score.summary()})
        if log is not None:
            log(f"      {group} in INT8: mean IoU {score.mean_iou:.4f}, worst {score.worst[1]:.4f} on "
                f"{', '.join(worst)} -> {'INT8' if accepted else 'stays float'}")
    score = judge(kept, emulator, report.cache_path) if kept else full
    nodes = sorted({n for g in kept for n in report.groups[g]})
    macs = sum(report.macs.get(g, 0) for g in kept)
    return AutoChoice(kept, nodes, 100 * macs / total, score, target.met(score), target, steps)


def block_report(fp32_model: Any, qdq_model: Any, emulator: Emulator) -> SensitivityReport:
    """Groups, MACs and the full-INT8 score (cached), without measuring any variant."""
    from .mixed import conv_groups, quantized_nodes
    from .sensitivity import cache_file, conv_macs

    path = cache_file(fp32_model, qdq_model, emulator, True)
    baseline = cached_score(path, "baseline", lambda: emulator.score(qdq_model))
    groups = conv_groups(quantized_nodes(qdq_model), "block")
    macs = conv_macs(fp32_model)
    return SensitivityReport(baseline, groups, {g: sum(macs.get(c, 0) for c in convs) for g, convs in groups.items()},
                             photos=emulator.names, full_baseline=baseline, cache_path=path)


def auto_choice(fp32_model: Any, qdq_model: Any, spec: Any, target: Target | None = None,
                progress: bool = True) -> AutoChoice:
    """`--keep-float auto` for one calibrated Q/DQ graph on the held-out photos (`choose_float`)."""
    from .cache import say
    from .sensitivity import held_out_photos

    emulator = Emulator(fp32_model, held_out_photos(), spec=spec)
    say(progress, f"      keep-float auto: growing INT8 block by block, judged on the {RANK_PHOTOS} worst of "
                  f"{len(emulator.names)} held-out photos (exact INT8 emulation; cached)")
    log = (lambda line: say(True, line)) if progress else None
    choice = choose_float(block_report(fp32_model, qdq_model, emulator), fp32_model, qdq_model, emulator, target,
                          log=log)
    say(progress, f"      keep-float auto: {len(choice.nodes)} nodes float ({choice.macs_percent:.1f}% of the MACs), "
                  f"mean IoU {choice.score.mean_iou:.4f}, worst {choice.score.worst[1]:.4f}"
                  + ("" if choice.met else f" (target {choice.target.describe()} not met)"))
    return choice
