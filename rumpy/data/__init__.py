"""Paired LR/HR image data: pairing, standard splits, decoded-image caching, crops."""
