"""Control: the loop (health -> route -> verify -> log -> publish), its state, leadership, log and metrics."""
