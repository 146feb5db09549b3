"""Training: Petastorm feeds Spark data into PyTorch (feed), models, the loop, launchers."""
