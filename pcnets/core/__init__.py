"""The science: the update rule (dynamics, with the explicit adjoint in adjoint), the net and its
timestep loop (pnet, loop, hooks, run_state, shapes), decoders and decoder files (decoders,
decoder_files), and the straightforward reference loop that tests and the benchmark hold the
engine against.

core/ imports nothing of pcnets but errors: a test keeps it so.
"""
