"""Measurement: probing paths, health with hysteresis and quorum, results shared between centers."""
