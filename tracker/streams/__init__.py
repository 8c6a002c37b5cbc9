"""Faust stream processors: turn raw events into live visitor profiles."""
