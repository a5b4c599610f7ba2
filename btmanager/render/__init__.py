"""Rendering of core results for people (Rich) and machines (JSON); nothing else prints."""
