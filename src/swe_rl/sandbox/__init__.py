"""Isolated execution of untrusted commands: one Protocol, several backends."""

from swe_rl.sandbox.protocol import Limits, Sandbox, SandboxError, SandboxUnavailable

__all__ = ["Limits", "Sandbox", "SandboxError", "SandboxUnavailable"]
