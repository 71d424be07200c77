"""How a command runs: the Session (device, numerics, torchrun, seeds, run folder, peak memory),
data loaders, run folders and provenance. No science here, and no presentation."""
