"""globalaccel: residency-constrained latency routing for one device cloud worldwide."""

__version__ = "0.1.0"
