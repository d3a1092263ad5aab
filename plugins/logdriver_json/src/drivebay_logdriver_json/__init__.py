"""drivebay json-file log driver."""
