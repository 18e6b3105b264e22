"""mtrlib: multi-task representation learning for recommender systems.

Plain Python + PyTorch; never imports streamlit. See ../DESIGN notes in README.
"""

__version__ = "0.1.0"
