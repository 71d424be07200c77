"""The commands that write a run folder, one spec each: what the CLI runs and what the report
shows. The CLI, the report's order, sections, summaries and findings, and `report --render` all
read COMMANDS, so a new command is its experiment module, its root config and one spec here
(README, "Adding a command"); a command without a Typer function of its own gets a plain one.

Every function is named as "module:function" and imported only when it is used, so reading the
specs costs nothing (`pcnets --help`) and names no module above this layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class CommandSpec:
    """One command: ``run`` is its experiment's ``run(cfg) -> Result``; ``render(path)`` draws
    its table.md, figures and summary.csv again from a run folder; ``summary(runs)`` is its
    table in the report's "Summary" from its runs (Markdown or None); ``findings(df)`` its bullets
    in "Findings". Its own config groups in the report's key config come from its run's
    config (every group of the schema but backbone, pc and data)."""

    name: str
    config: str
    run: str
    help: str = ""
    render: str | None = None
    summary: str | None = None
    findings: str | None = None

    def load(self, part: str):
        """The function named by ``part`` ("run", "render", ...), imported now; None if unset."""
        ref = getattr(self, part)
        if ref is None:
            return None
        module, _, name = ref.partition(":")
        return getattr(import_module(module), name)


_SPECS = (  # in the order of the report's sections and summaries
    CommandSpec(
        "train-feedback",
        "train-feedback",
        "pcnets.experiments.train:run",
        "Train the feedback decoders.",
    ),
    CommandSpec(
        "eval-noise",
        "eval-noise",
        "pcnets.experiments.eval_noise:run",
        "Top-1 accuracy per timestep under Gaussian noise.",
        render="pcnets.reporting.noise_report:render",
        summary="pcnets.reporting.summaries:noise_summary",
        findings="pcnets.reporting.findings:noise_findings",
    ),
    CommandSpec(
        "eval-corruptions",
        "eval-corruptions",
        "pcnets.experiments.eval_corruptions:run",
        "Top-1 accuracy per timestep on ImageNet-C, with mCE.",
        render="pcnets.reporting.corruption_report:render",
        summary="pcnets.reporting.summaries:corruption_summary",
        findings="pcnets.reporting.findings:corruption_findings",
    ),
    CommandSpec(
        "attack",
        "attack",
        "pcnets.experiments.attack:run",
        "L-infinity attacks through the unrolled dynamics.",
        render="pcnets.reporting.attack:render",
        summary="pcnets.reporting.summaries:attack_summary",
    ),
    CommandSpec(
        "tune",
        "tune",
        "pcnets.experiments.tune:run",
        "Learn beta, lambda, alpha per encoder.",
        render="pcnets.reporting.tune:render",
        summary="pcnets.reporting.summaries:tune_summary",
    ),
    CommandSpec(
        "manifold",
        "manifold",
        "pcnets.experiments.manifold:run",
        "Correlation distance of noisy to clean representations.",
        render="pcnets.reporting.manifold:render",
        summary="pcnets.reporting.summaries:manifold_summary",
    ),
)
COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in _SPECS}


def specs_with(part: str) -> list[CommandSpec]:
    """The specs that set ``part`` ("render", "summary", "findings"), in the report's order."""
    return [spec for spec in COMMANDS.values() if getattr(spec, part) is not None]
