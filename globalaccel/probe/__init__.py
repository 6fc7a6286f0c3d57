"""The latency probe loop: probers, health with hysteresis and quorum, the control loop, metrics,
and an emulated world for local runs."""
