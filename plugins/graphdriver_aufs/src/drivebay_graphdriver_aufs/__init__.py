"""drivebay graph driver: aufs layout and whiteouts, kernel aufs or fuse-overlayfs."""
