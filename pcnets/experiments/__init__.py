"""One module per command: each computes its result through a Session and writes it into a run
folder; tables and figures are pcnets.reporting's job."""
