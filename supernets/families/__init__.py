"""Model families of elastic supernets."""
