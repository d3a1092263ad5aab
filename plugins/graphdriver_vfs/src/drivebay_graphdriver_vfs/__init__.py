"""drivebay graph driver: vfs, a full copy of the parent per layer (reflinked where possible)."""
