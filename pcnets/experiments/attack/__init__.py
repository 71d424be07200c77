"""Adversarial attacks through the unrolled dynamics (METHOD.md section 7 item 3), with the checks
that catch masked gradients.

attack_registry (one entry per attack), sign (pcnets' sign-gradient loop), spec (what to
attack), attacks (one attack on one batch), models (the attacked networks), selection (which
images), attack_cells (one cell of the sweep), checks (the sanity checks), attack_run (the
command). The table and figures are made by pcnets.reporting.attack from the run folder.
"""

from pcnets.experiments.attack.attack_registry import ATTACKS, Attack
from pcnets.experiments.attack.attack_run import AttackResult, run, run_attack
from pcnets.experiments.attack.attacks import attack_images, batch_seed
from pcnets.experiments.attack.checks import (
    NO_PATH,
    Check,
    gradient_free_check,
    input_gradient,
    model_checks,
    result_checks,
    warning_lines,
)
from pcnets.experiments.attack.models import FeedforwardModel, UnrolledModel
from pcnets.experiments.attack.selection import Selection, load_images, select_images
from pcnets.experiments.attack.sign import attack_loss, succeeded
from pcnets.experiments.attack.spec import AttackSpec, CheckSpec
from pcnets.experiments.attack.values import parse_eps, target_labels

__all__ = [
    "ATTACKS",
    "NO_PATH",
    "Attack",
    "AttackResult",
    "AttackSpec",
    "Check",
    "CheckSpec",
    "FeedforwardModel",
    "Selection",
    "UnrolledModel",
    "attack_images",
    "attack_loss",
    "batch_seed",
    "gradient_free_check",
    "input_gradient",
    "load_images",
    "model_checks",
    "parse_eps",
    "result_checks",
    "run",
    "run_attack",
    "select_images",
    "succeeded",
    "target_labels",
    "warning_lines",
]
