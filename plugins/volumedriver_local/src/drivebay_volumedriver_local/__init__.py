"""drivebay local volume driver."""
