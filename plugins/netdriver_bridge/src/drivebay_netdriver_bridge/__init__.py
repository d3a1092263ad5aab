"""drivebay's bridge network driver: Docker's default bridge network, also usable as a CNI plugin."""
