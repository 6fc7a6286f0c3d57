"""Pulumi component resources for globalaccel (IaC only; all logic lives in the globalaccel package)."""
