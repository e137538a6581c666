from rl_runner.networks.mlp import ACTIVATIONS, build_mlp, hidden_layers, resolve_net_spec

__all__ = ["ACTIVATIONS", "build_mlp", "hidden_layers", "resolve_net_spec"]
