"""Training: PPO for the LSTM demonstrator, decision-transformer training, evaluation.

Import the submodules directly (``from dtlens.training.ppo import PPOConfig, train_ppo``);
this package imports nothing on its own, so ``import dtlens`` stays light.
"""
