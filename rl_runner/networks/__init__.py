from rl_runner.networks.mlp import NetSpec, build_mlp, resolve_net_spec

__all__ = ["NetSpec", "build_mlp", "resolve_net_spec"]
