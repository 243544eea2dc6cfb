"""Kernels applied to frames as they are read: pure functions of numpy arrays."""
