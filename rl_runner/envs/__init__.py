from rl_runner.envs.make import make_env, make_vector_env
from rl_runner.envs.state import restore_vector_env_state, vector_env_state

__all__ = ["make_env", "make_vector_env", "vector_env_state", "restore_vector_env_state"]
