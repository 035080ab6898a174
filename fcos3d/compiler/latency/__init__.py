"""The latency model: a Vela-style per-layer estimate (estimate.py), its perf report (report.py) and the fit of
the host profile to measured layer times (fit.py; scripts/calibrate_host.py runs it)."""
