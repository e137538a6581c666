from rl_runner.networks.mlp import build_mlp, resolve_net_spec

__all__ = ["build_mlp", "resolve_net_spec"]
