"""Trace readers and the discrete-event simulator: a simulated clock and executor for the one scheduler."""
