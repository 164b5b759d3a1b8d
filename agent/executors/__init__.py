"""Where the stop procedure runs: `Host` (host.py) is what it needs, answered by this machine (local.py:
psutil, /proc, sock_diag netlink, pidfd) or by a remote POSIX shell over SSH (ssh.py; its settings in
ssh_config.py, which does not import asyncssh). Used by the agent's procedure and daemon, the controller's
agentless dispatch, and `obstop observer`."""
