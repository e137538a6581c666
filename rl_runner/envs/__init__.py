"""Gymnasium envs from the ``env`` config group (``make.py``), their wrappers (``wrappers.py``), snapshots of
running envs (``state.py``) and the project's own T-maze (``tmaze.py``). Import from the modules themselves: this
package module imports nothing, so that registering the T-maze (``import rl_runner``) loads no MuJoCo."""
