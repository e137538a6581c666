"""The loops that drive agents: the shared run skeleton (``base.py``), the shared env loop (``env_loop.py``), and
one module per way of training (``off_policy.py``, ``dataset.py``). Which module trains and which loads a kind of
agent is plain data in ``rl_runner/registry.py``."""
