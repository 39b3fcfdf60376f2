"""Everything that runs on a host: install, switch, runtime, state, the agent. Shipped to hosts."""
