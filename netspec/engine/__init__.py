"""The engine: the one training loop (loop.py) that runs every kind, with what it owns:
devices, precision and optimizers (parts.py), TensorBoard and progress (board.py), run
folders and checkpoints (runs.py), and data parallelism (distributed.py)."""
