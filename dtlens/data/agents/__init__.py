"""Demonstrator agents: the :class:`Agent` protocol and the agents that implement it.

Example:
    >>> from dtlens.data.agents import LSTMAgent, LSTMAgentConfig, sample_actions
    >>> agent = LSTMAgent(LSTMAgentConfig(image_dim=8, memory_dim=8, seed=0)).eval()
    >>> agent.n_actions
    7
"""

from dtlens.data.agents.base import Agent, action_probabilities, check_sampling, sample_actions
from dtlens.data.agents.lstm import LSTMAgent, LSTMAgentConfig, load_lstm_agent, save_lstm_agent
from dtlens.data.agents.original_lstm import convert_original_lstm, load_original_lstm

__all__ = [
    "Agent",
    "LSTMAgent",
    "LSTMAgentConfig",
    "action_probabilities",
    "check_sampling",
    "convert_original_lstm",
    "load_lstm_agent",
    "load_original_lstm",
    "sample_actions",
    "save_lstm_agent",
]
