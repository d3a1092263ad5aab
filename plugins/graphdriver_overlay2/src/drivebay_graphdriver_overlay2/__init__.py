"""drivebay graph driver overlay2: kernel overlayfs in moby's overlay2 layout."""
