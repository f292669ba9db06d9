"""Data layer: readers for real and synthetic datasets, lesion-grouped splits, decoded-image cache."""
