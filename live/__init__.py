"""The daemon and everything that runs without torch: ports, streaming context, engine,
policy, scheduler, clock and the command line."""
