"""The emulated world: every edge and center as a loopback listener with physics delays and faults (local runs, tests)."""
