"""Running Heisenberg as a service: systemd notify protocol, units, the daemon, the doctor."""
