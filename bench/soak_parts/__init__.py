"""The parts of the chaos soak (bench/soak.py), a room each."""
