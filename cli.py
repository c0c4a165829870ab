"""Shim so `python cli.py ...` works from a checkout; the app lives in textsynth.cli."""

from textsynth.cli import app

if __name__ == "__main__":
    app()
