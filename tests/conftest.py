import os

# Tests never touch the user's compilation cache and never open windows.
os.environ.setdefault("REINFORCE_JAX_CACHE", "off")
os.environ.setdefault("MPLBACKEND", "Agg")
