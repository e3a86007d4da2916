"""Edge proxy, registrar, location service and NAT handling (issue [2/5])."""
