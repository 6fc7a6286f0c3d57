"""Applications: `up`, the main job, wiring measurement, control, DNS and the emulated world."""
