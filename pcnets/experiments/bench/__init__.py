"""`pcnets bench`: how fast the dynamics run, against the straightforward loop and the backbone.

Modes (each a full run of T timesteps on one batch, except the feedforward ones):
    reference         pcnets.core.reference: eager fp32 autograd, every prediction and gradient
                      at every timestep (the reference code's way)
    feedforward       the plain backbone, one pass, fp32
    engine            pcnets' engine alone: fp32 eager, NCHW, BatchNorm not folded
    feedforward_fast  the plain backbone with the run's numerics
    engine_fast       the engine with the run's numerics, what every command runs (on a CPU:
                      BatchNorm folded, channels_last where the backbone measured faster; on
                      CUDA also bf16 autocast and cuDNN autotuning)
    engine_compiled   engine_fast plus torch.compile of the decoder step

Timing: warm-up runs first, then ``repeats`` rounds that run every mode once, interleaved, so
that a busy machine slows all modes alike; a mode's time is its median over rounds, and a ratio
is the median over rounds of the ratio within a round.
"""

from pcnets.experiments.bench.benchmark import bench, run
from pcnets.experiments.bench.spec import MODES, BenchSpec, bench_config, check_modes, default_modes
from pcnets.experiments.bench.timing import measure, mode_functions, paired_ratio, summarize

__all__ = [
    "MODES",
    "BenchSpec",
    "bench",
    "bench_config",
    "check_modes",
    "default_modes",
    "measure",
    "mode_functions",
    "paired_ratio",
    "run",
    "summarize",
]
