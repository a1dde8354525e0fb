"""Tests of pulling from and pushing to registries."""
