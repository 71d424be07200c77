"""The science: the update rule (dynamics), the timestep loop (pnet), decoders and decoder files,
and the straightforward reference loop that tests and the benchmark hold the engine against.

core/ imports nothing of pcnets but errors: a test keeps it so.
"""
