"""Training and export of camwatch's drift model (PyTorch; the daemon never imports this)."""
