"""Hostile, concurrent and faulty use: the probes an independent security review ran, kept."""
