"""The daemon and everything that runs without torch: the ONNX runtime (session, steppers,
voices), ports, streaming context, policy, scheduler and clock. Never imports ``export``."""
