"""Text generation with exact token ids and log-probs: the Policy Protocol and its backends.

Backends are imported from their modules (`swe_rl.policy.hf`, `.openai`, `.vllm`,
`.scripted`) so that importing this package stays cheap and vLLM stays optional.
"""

from swe_rl.policy.protocol import Policy

__all__ = ["Policy"]
