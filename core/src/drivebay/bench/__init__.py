"""``drivebay bench``: drivers compared across filesystems, as ratios against references timed in the same run."""
