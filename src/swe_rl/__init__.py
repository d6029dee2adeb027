"""swe-rl: train software-engineering agents with RFT and multi-turn DAPO on real repositories."""

__version__ = "0.1.0"
