"""mtrlib: multi-task representation learning for recommender systems.

Plain Python + PyTorch; never imports streamlit.
"""
import os

# OpenMP threads that spin while waiting make small-tensor training 10-50x slower whenever the
# cores are shared (a teaching server, a laptop running the app and a browser). Passive waiting
# costs nothing measurable when the machine is idle. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
