"""Python code protoc generated from containerd's snapshot API; see README.md here for how."""
