"""The agent scaffold (PAPER.md section 2): tools, prompts, action parser, observations, the episode loop."""

from swe_rl.agent.loop import AgentConfig, Episode, run_episode
from swe_rl.agent.parser import ParsedAction, parse_action

__all__ = ["AgentConfig", "Episode", "ParsedAction", "parse_action", "run_episode"]
