"""Bundled example experiments (`archlab train digits_cnn`, ...)."""
